package io.trellis2lora.upload;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import com.amazonaws.services.lambda.runtime.events.SQSBatchResponse;
import com.amazonaws.services.lambda.runtime.events.SQSEvent;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.orchestration.UploadTrigger;
import java.util.ArrayList;
import java.util.List;

/**
 * The upload queue's consumer (S3 ObjectCreated on uploads/*.zip → SQS → here). Messages that fail for a passing
 * reason (S3 or Step Functions errors) are returned as batch item failures, so SQS redelivers only those; the event
 * source mapping needs ReportBatchItemFailures. Refused uploads are not failures: they are reported beside the zip.
 */
public class UploadTriggerHandler implements RequestHandler<SQSEvent, SQSBatchResponse> {
    private UploadTrigger trigger;

    public UploadTriggerHandler() {
    }

    /** With a trigger built elsewhere (tests point one at the emulator). */
    UploadTriggerHandler(UploadTrigger trigger) {
        this.trigger = trigger;
    }

    @Override
    public SQSBatchResponse handleRequest(SQSEvent event, Context context) {
        List<SQSBatchResponse.BatchItemFailure> failures = new ArrayList<>();
        for (SQSEvent.SQSMessage message : event.getRecords()) {
            try {
                for (UploadTrigger.Outcome o : trigger().handle(message.getBody())) {
                    System.out.println("upload " + o.key() + ": " + o.result()
                            + (o.requestId() == null ? "" : " " + o.requestId())
                            + (o.detail() == null ? "" : " (" + o.detail() + ")"));
                }
            } catch (Exception e) {
                System.err.println("upload message " + message.getMessageId() + " failed, will be retried: " + e);
                failures.add(SQSBatchResponse.BatchItemFailure.builder()
                        .withItemIdentifier(message.getMessageId()).build());
            }
        }
        return SQSBatchResponse.builder().withBatchItemFailures(failures).build();
    }

    private synchronized UploadTrigger trigger() {
        if (trigger == null) {
            Services s = Services.fromEnvironment();
            trigger = new UploadTrigger(s.s3(), s.sfn(), s.http(), s.config().requestsBucket(),
                    s.config().stateMachineArn());
        }
        return trigger;
    }
}

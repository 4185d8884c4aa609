package io.trellis2lora.webhook;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import com.amazonaws.services.lambda.runtime.events.SQSBatchResponse;
import com.amazonaws.services.lambda.runtime.events.SQSEvent;
import io.trellis2lora.core.api.PlatformConfig;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.storage.PresignedLinks;
import io.trellis2lora.orchestration.WebhookSender;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.services.s3.presigner.S3Presigner;
import software.amazon.awssdk.services.sqs.SqsClient;

/**
 * The webhook queue's consumer. A failed delivery is handed back to SQS as a batch item failure after its
 * visibility is pushed out by an exponential backoff, so it is retried later; after the queue's maxReceiveCount
 * (the infrastructure's redrive policy) SQS moves it to the dead-letter queue. Environment:
 * TRELLIS2_WEBHOOK_QUEUE_URL (this queue), TRELLIS2_WEBHOOK_BACKOFF_SECONDS (first delay, default 30),
 * TRELLIS2_PRESIGN_SECONDS (lifetime of the payload's links, signed at each try).
 */
public class WebhookHandler implements RequestHandler<SQSEvent, SQSBatchResponse> {
    private final WebhookSender sender;
    private final SqsClient sqs;
    private final String queueUrl;
    private final int backoffBase;

    public WebhookHandler() {
        this(new WebhookSender(AddressPolicy.fromEnvironment(System::getenv), Duration.ofSeconds(10),
                        new PresignedLinks(S3Presigner.create(),
                                PlatformConfig.fromEnvironment(System::getenv).presignTtl())),
                SqsClient.builder().httpClientBuilder(UrlConnectionHttpClient.builder()).build(),
                System.getenv("TRELLIS2_WEBHOOK_QUEUE_URL"), intEnv("TRELLIS2_WEBHOOK_BACKOFF_SECONDS", 30));
    }

    public WebhookHandler(WebhookSender sender, SqsClient sqs, String queueUrl, int backoffBase) {
        this.sender = sender;
        this.sqs = sqs;
        this.queueUrl = queueUrl;
        this.backoffBase = backoffBase;
    }

    @Override
    public SQSBatchResponse handleRequest(SQSEvent event, Context context) {
        List<SQSBatchResponse.BatchItemFailure> failures = new ArrayList<>();
        for (SQSEvent.SQSMessage m : event.getRecords()) {
            WebhookSender.Delivery d = sender.deliver(m.getBody());
            if (d.delivered()) {
                continue;
            }
            int tries = receiveCount(m);
            int delay = WebhookSender.backoffSeconds(backoffBase, tries);
            System.err.println("webhook " + m.getMessageId() + " try " + tries + " failed (" + d.detail()
                    + "); next try in " + delay + " s");
            if (queueUrl != null && !queueUrl.isBlank() && m.getReceiptHandle() != null) {
                try {
                    sqs.changeMessageVisibility(b -> b.queueUrl(queueUrl).receiptHandle(m.getReceiptHandle())
                            .visibilityTimeout(delay));
                } catch (RuntimeException e) {
                    System.err.println("webhook " + m.getMessageId() + ": cannot set the backoff: " + e.getMessage());
                }
            }
            failures.add(SQSBatchResponse.BatchItemFailure.builder().withItemIdentifier(m.getMessageId()).build());
        }
        return SQSBatchResponse.builder().withBatchItemFailures(failures).build();
    }

    private static int receiveCount(SQSEvent.SQSMessage m) {
        try {
            return Integer.parseInt(m.getAttributes().getOrDefault("ApproximateReceiveCount", "1"));
        } catch (RuntimeException e) {
            return 1;
        }
    }

    private static int intEnv(String name, int fallback) {
        String v = System.getenv(name);
        return v == null || v.isBlank() ? fallback : Integer.parseInt(v.trim());
    }
}

package io.trellis2lora.infrastructure;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;

/**
 * What the hosted-queue features need and no more: submit keeps a fal_webhook, the webhook function signs the
 * payload's links (read only), status lists the Batch queue and reads the jobs' log group.
 */
class QueueApiPermissionsTest {
    static final String FUNCTION = "AWS::Lambda::Function";

    @Test
    void statusReadsTheJobQueueAndTheJobsLogs() {
        String queue = Synth.logicalId("AWS::Batch::JobQueue", "GpuJobQueue");
        String logs = Synth.logicalId("AWS::Logs::LogGroup", "BatchJobLogs");
        JsonNode env = Synth.props(FUNCTION, "StatusFunction").at("/Environment/Variables");
        assertTrue(Synth.refersTo(env.path("TRELLIS2_JOB_QUEUE"), queue), env.toString());
        assertTrue(Synth.refersTo(env.path("TRELLIS2_JOB_LOG_GROUP"), logs), env.toString());
        Permissions status = Permissions.ofFunction("StatusFunction");
        assertTrue(status.canOn("batch:ListJobs", queue));
        assertTrue(status.canOn("batch:DescribeJobs", queue));
        assertTrue(status.canOn("logs:GetLogEvents", logs));
        assertFalse(status.canOn("batch:SubmitJob", queue));
        assertFalse(status.canOn("batch:TerminateJob", queue));
        assertFalse(status.canOn("logs:PutLogEvents", logs));
    }

    @Test
    void submitKeepsTheWebhookAndTheSenderSignsReadOnlyLinks() {
        String requests = Synth.logicalId("AWS::S3::Bucket", "RequestsBucket");
        Permissions submit = Permissions.ofFunction("SubmitFunction");
        assertTrue(submit.canObject("s3:PutObject", requests, "requests/r1/webhook.json"));
        assertFalse(submit.canObject("s3:PutObject", requests, "requests/r1/result.json"));
        Permissions trigger = Permissions.ofFunction("UploadTriggerFunction");
        assertTrue(trigger.canObject("s3:PutObject", requests, "requests/r1/webhook.json"), "a sidecar's fal_webhook");
        assertFalse(trigger.canObject("s3:PutObject", requests, "requests/r1/result.json"));

        Permissions webhook = Permissions.ofFunction("WebhookFunction");
        assertTrue(webhook.canObject("s3:GetObject", requests, "requests/r1/adapters/texture.safetensors"));
        assertTrue(webhook.canObject("s3:GetObject", requests, "datasets/k1/preprocessed.zip"));
        assertFalse(webhook.canObject("s3:PutObject", requests, "requests/r1/adapters/texture.safetensors"));
        assertFalse(webhook.canObject("s3:DeleteObject", requests, "requests/r1/result.json"));
    }
}

package io.trellis2lora.finalize;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.orchestration.Finalizer;
import io.trellis2lora.orchestration.SqsWebhookQueue;
import java.io.IOException;
import java.io.UncheckedIOException;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.services.sqs.SqsClient;

/**
 * {@code ${FinalizeFunctionArn}}: the Finalize task and the training stages' failure step (see {@link Finalizer}).
 * TRELLIS2_WEBHOOK_QUEUE_URL names the webhook queue; without it no webhook is sent.
 */
public class FinalizeHandler implements RequestHandler<JsonNode, JsonNode> {
    private Finalizer finalizer;

    @Override
    public JsonNode handleRequest(JsonNode event, Context context) {
        try {
            return finalizer().handle(event);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private synchronized Finalizer finalizer() {
        if (finalizer == null) {
            Services services = Services.fromEnvironment();
            String queueUrl = System.getenv("TRELLIS2_WEBHOOK_QUEUE_URL");
            Finalizer.WebhookQueue queue = null;
            if (queueUrl != null && !queueUrl.isBlank()) {
                SqsClient sqs = SqsClient.builder().httpClientBuilder(UrlConnectionHttpClient.builder()).build();
                queue = new SqsWebhookQueue(sqs, queueUrl);
            }
            finalizer = new Finalizer(services.requests(), queue);
        }
        return finalizer;
    }
}

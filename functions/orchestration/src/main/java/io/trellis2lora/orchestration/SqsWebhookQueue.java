package io.trellis2lora.orchestration;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import software.amazon.awssdk.services.sqs.SqsClient;

/** Queues {url, body} for the webhook sender (functions/webhook), which POSTs it with retries. */
public final class SqsWebhookQueue implements Finalizer.WebhookQueue {
    private final SqsClient sqs;
    private final String queueUrl;

    public SqsWebhookQueue(SqsClient sqs, String queueUrl) {
        this.sqs = sqs;
        this.queueUrl = queueUrl;
    }

    @Override
    public void send(String requestId, String url, JsonNode message) {
        ObjectNode envelope = Json.MAPPER.createObjectNode();
        envelope.put("url", url);
        envelope.set("body", message);
        sqs.sendMessage(b -> b.queueUrl(queueUrl).messageBody(Json.write(envelope)));
    }
}

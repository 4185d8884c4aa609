package io.trellis2lora.orchestration;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.model.TrainingResult;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.PresignedLinks;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.apache.http.impl.conn.SystemDefaultDnsResolver;

/**
 * Delivers one queued webhook: {@code {"url": ..., "body": {request_id, gateway_request_id, status: "OK"|"ERROR",
 * payload, error}}} is POSTed as JSON, the payload (the result) with its s3:// files as presigned https URLs, to the
 * URL the user gave (submit's {@code ?fal_webhook=}, or {@code fal_webhook} in an upload's sidecar). The URL's
 * addresses are checked against the same policy as user archive URLs, so a webhook cannot reach the
 * deployment's private network.
 */
public final class WebhookSender {
    public record Delivery(boolean delivered, String detail) {
    }

    /** Resolves the host once, vets every address, and connects to those: no second lookup to rebind. */
    private final SafeHttp http;
    /** Signs the payload's s3:// files at each try, so the receiver gets links it can download for their lifetime. */
    private final PresignedLinks links;

    public WebhookSender(AddressPolicy policy, Duration timeout, PresignedLinks links) {
        this(new SafeHttp(policy, null, "webhook", timeout, SystemDefaultDnsResolver.INSTANCE), links);
    }

    /** @param links null to send the payload's file URLs as they are queued (a queue without s3:// files) */
    public WebhookSender(SafeHttp http, PresignedLinks links) {
        this.http = http;
        this.links = links;
    }

    public Delivery deliver(String messageBody) {
        JsonNode message;
        try {
            message = Json.MAPPER.readTree(messageBody);
        } catch (IOException e) {
            return new Delivery(false, "unreadable message: " + e.getMessage());
        }
        String url = message.path("url").asText("");
        JsonNode body = message.path("body");
        if (links != null && body.path("payload").isObject()) {
            try {
                TrainingResult result = TrainingResult.parse(Json.write(body.get("payload")));
                ((ObjectNode) body).set("payload", Json.MAPPER.valueToTree(links.of(result)));
            } catch (InputRefusedException e) {
                return new Delivery(false, "unreadable payload: " + e.getMessage());
            }
        }
        String host;
        try {
            host = URI.create(url).getHost();
        } catch (IllegalArgumentException e) {
            return new Delivery(false, "not a URL: " + url);
        }
        try {
            int status = http.post(url, "application/json", Json.write(body).getBytes(StandardCharsets.UTF_8));
            return status / 100 == 2 ? new Delivery(true, "HTTP " + status)
                    : new Delivery(false, "HTTP " + status + " from " + host);
        } catch (InputRefusedException e) {
            return new Delivery(false, e.getMessage());
        } catch (IOException e) {
            return new Delivery(false, "cannot reach " + host + ": " + e.getMessage());
        }
    }

    /** Seconds until the next try: base × 2^(tries-1), at most 15 minutes (SQS's visibility ceiling is 12 h). */
    public static int backoffSeconds(int baseSeconds, int receiveCount) {
        long delay = (long) baseSeconds << Math.min(20, Math.max(0, receiveCount - 1));
        return (int) Math.min(900, delay);
    }
}

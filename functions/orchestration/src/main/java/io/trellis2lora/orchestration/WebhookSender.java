package io.trellis2lora.orchestration;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.net.AddressPolicy;
import java.io.IOException;
import java.net.InetAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Locale;

/**
 * Delivers one queued webhook: {@code {"url": ..., "body": {request_id, status: "OK"|"ERROR", payload, error}}} is
 * POSTed as JSON to the URL the user gave ({@code fal_webhook} in an upload's sidecar; submit refuses it today). The
 * URL's addresses are checked against the same policy as user archive URLs, so a webhook cannot reach the
 * deployment's private network.
 */
public final class WebhookSender {
    public record Delivery(boolean delivered, String detail) {
    }

    private final HttpClient http;
    private final AddressPolicy policy;
    private final Duration timeout;

    public WebhookSender(AddressPolicy policy, Duration timeout) {
        this.http = HttpClient.newBuilder().connectTimeout(timeout)
                .followRedirects(HttpClient.Redirect.NEVER).build();
        this.policy = policy;
        this.timeout = timeout;
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
        URI uri;
        try {
            uri = URI.create(url);
        } catch (IllegalArgumentException e) {
            return new Delivery(false, "not a URL: " + url);
        }
        String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
        if (!scheme.equals("https") && !(scheme.equals("http") && policy.allowLoopback())) {
            return new Delivery(false, "webhook URL must be https: " + url);
        }
        try {
            for (InetAddress a : InetAddress.getAllByName(uri.getHost())) {
                String refusal = policy.refusal(a);
                if (refusal != null) {
                    return new Delivery(false, "webhook host " + uri.getHost() + " refused: " + refusal);
                }
            }
            HttpResponse<String> response = http.send(HttpRequest.newBuilder(uri).timeout(timeout)
                    .header("Content-Type", "application/json")
                    .header("User-Agent", "trellis2-lora-webhook")
                    .POST(HttpRequest.BodyPublishers.ofString(Json.write(body))).build(),
                    HttpResponse.BodyHandlers.ofString());
            int status = response.statusCode();
            return status / 100 == 2 ? new Delivery(true, "HTTP " + status)
                    : new Delivery(false, "HTTP " + status + " from " + uri.getHost());
        } catch (IOException e) {
            return new Delivery(false, "cannot reach " + uri.getHost() + ": " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Delivery(false, "interrupted");
        }
    }

    /** Seconds until the next try: base × 2^(tries-1), at most 15 minutes (SQS's visibility ceiling is 12 h). */
    public static int backoffSeconds(int baseSeconds, int receiveCount) {
        long delay = (long) baseSeconds << Math.min(20, Math.max(0, receiveCount - 1));
        return (int) Math.min(900, delay);
    }
}

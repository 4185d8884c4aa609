package io.trellis2lora.core.api;

import com.fasterxml.jackson.annotation.JsonProperty;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.pricing.PriceBreakdown;
import io.trellis2lora.core.storage.ObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.util.HexFormat;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import org.apache.http.impl.conn.SystemDefaultDnsResolver;
import software.amazon.awssdk.services.sfn.model.ExecutionAlreadyExistsException;

/**
 * POST /requests: validate, inspect, price, store request.json, start the state machine execution named by the
 * request id. With an Idempotency-Key header the request id is derived from the caller (the API key's id) and the
 * key, so a repeat by the same caller finds the first request and answers with it instead of starting a second
 * one; the same key with another request is refused (422), and another caller's same key is another request.
 * An https archive whose server ignores Range requests is not downloaded here: the request is accepted with a
 * provisional price and Prepare stages it. {@code ?fal_webhook=URL} (the hosted queue's query parameter) asks for the
 * completion POST: the URL is vetted now by the same address policy the sender applies at delivery, and kept as
 * requests/&lt;id&gt;/webhook.json for Finalize; a repeat of an Idempotency-Key keeps the first request's webhook.
 */
public final class SubmitOperation extends ApiOperation {
    /** Starts the execution named by the request id once request.json is stored. */
    public interface Executions {
        void start(StoredRequest stored);
    }

    private final RequestValidator validator = new RequestValidator(RequestValidator.Mode.CLOUD);
    private final ObjectStore requests;
    private final ArchiveOpener opener;
    private final Executions executions;
    /** Vets fal_webhook URLs (resolves the host, checks every address) without sending anything. */
    private final SafeHttp webhookCheck;

    /** The longest fal_webhook accepted (query strings beyond a few KB are refused by gateways anyway). */
    static final int MAX_WEBHOOK_URL = 2048;

    /** The API's: the requests bucket, s3:// data_urls in the deployment's data buckets, Step Functions. */
    public SubmitOperation(Services services) {
        super(services);
        this.requests = services.requests();
        this.opener = new ArchiveOpener(services.s3(), services.http(), services.config().dataBuckets());
        this.executions = this::startExecution;
        this.webhookCheck = new SafeHttp(services.config().addressPolicy(), null, "fal_webhook",
                Duration.ofSeconds(10), SystemDefaultDnsResolver.INSTANCE);
    }

    /**
     * Another place that submits (the local runner): its own store, opener and way to start executions; only
     * {@link #submit} is used, never the HTTP side.
     */
    public SubmitOperation(ObjectStore requests, ArchiveOpener opener, Executions executions) {
        super(null);
        this.requests = requests;
        this.opener = opener;
        this.executions = executions;
        this.webhookCheck = null;
    }

    /** @param gatewayRequestId the hosted queue's second id (its last retried try); here always the request id */
    public record Answer(
            @JsonProperty("request_id") String requestId,
            @JsonProperty("gateway_request_id") String gatewayRequestId,
            @JsonProperty("status_url") String statusUrl,
            @JsonProperty("response_url") String responseUrl,
            @JsonProperty("cancel_url") String cancelUrl,
            @JsonProperty("estimate") PriceBreakdown estimate) {
    }

    @Override
    protected ApiResponse process(ApiRequest request) throws Exception {
        String key = request.header("Idempotency-Key");
        String webhook = webhook(request);
        if (key == null || key.isBlank()) {
            StoredRequest stored = submit(validator.parse(request.body()), UUID.randomUUID().toString(), null,
                    webhook);
            return ApiResponse.json(202, answer(stored, request));
        }
        if (key.length() > 255) {
            throw new InputRefusedException("Idempotency-Key is longer than 255 characters");
        }
        TrainingRequest parsed = validator.parse(request.body());
        // Scoped to the caller: another API key's same Idempotency-Key is its own request, never this one.
        String scoped = (request.caller() == null ? "" : request.caller()) + "\n" + key;
        String requestId = UUID.nameUUIDFromBytes(("idempotency-key:" + scoped).getBytes(StandardCharsets.UTF_8))
                .toString();
        StoredRequest earlier = load(requestId);
        if (earlier != null) {
            return repeat(earlier, parsed, request);
        }
        StoredRequest stored = submit(parsed, requestId, sha256(scoped), webhook);
        // Null: a concurrent first use of the key stored its request first; this one is a repeat of it.
        return stored == null ? repeat(load(requestId), parsed, request)
                : ApiResponse.json(202, answer(stored, request));
    }

    /** The fal_webhook query parameter, vetted; null when absent. */
    private String webhook(ApiRequest request) {
        String url = request.queryParameter("fal_webhook");
        if (url == null) {
            return null;
        }
        url = url.trim();
        if (url.isEmpty()) {
            throw new InputRefusedException("fal_webhook is empty: give the https URL to POST the result to");
        }
        if (url.length() > MAX_WEBHOOK_URL) {
            throw new InputRefusedException("fal_webhook is longer than " + MAX_WEBHOOK_URL + " characters");
        }
        webhookCheck.checkTarget(url);
        return url;
    }

    /** The key's request was stored before: the same request is answered with it, another one refused. */
    private ApiResponse repeat(StoredRequest earlier, TrainingRequest parsed, ApiRequest request) {
        if (!sameRequest(earlier.request(), parsed)) {
            return ApiResponse.refused(422, new InputRefusedException("this Idempotency-Key was already used "
                    + "with another request body; send a new key for a new request"));
        }
        executions.start(earlier);
        return ApiResponse.json(200, answer(earlier, request));
    }

    /** The same training request, whatever the JSON's spelling (field order, 1e-4 or 0.00010). */
    static boolean sameRequest(TrainingRequest a, TrainingRequest b) {
        return a.dataUrl().equals(b.dataUrl()) && a.denoisers().equals(b.denoisers())
                && a.resolution() == b.resolution() && a.rank() == b.rank()
                && a.learningRate().compareTo(b.learningRate()) == 0 && a.trainingSteps() == b.trainingSteps()
                && a.evaluate().equals(b.evaluate());
    }

    /**
     * A validated request becomes {@code requestId}: its archive inspected and priced (provisionally when it cannot
     * be inspected by ranged reads), request.json stored, the execution started. With an idempotency key's hash,
     * request.json is only created, never replaced: null when another submit of that key stored one first.
     */
    public StoredRequest submit(TrainingRequest request, String requestId, String keyHash) throws IOException {
        return submit(request, requestId, keyHash, null);
    }

    /** As {@link #submit(TrainingRequest, String, String)}, with the vetted webhook URL to keep (null: none). */
    public StoredRequest submit(TrainingRequest request, String requestId, String keyHash, String webhook)
            throws IOException {
        Assessment a = Assessment.of(request, opener, null);
        StoredRequest stored = new StoredRequest(requestId, Instant.now().toString(), keyHash, a.request(),
                a.inputUri(), a.inspection(), a.estimate());
        byte[] json = Json.pretty(stored).getBytes(StandardCharsets.UTF_8);
        String key = StorageLayout.requestJson(requestId);
        if (webhook != null && !requests.exists(key)) {
            // Before request.json: whoever finds the request (a repeat, Finalize) finds its webhook with it.
            requests.write(StorageLayout.webhook(requestId), Json.write(Map.of("url", webhook))
                    .getBytes(StandardCharsets.UTF_8), "application/json");
        }
        if (keyHash == null) {
            requests.write(key, json, "application/json");
        } else if (!requests.create(key, json, "application/json")) {
            return null;
        }
        executions.start(stored);
        return stored;
    }

    /** Idempotent: Step Functions treats a repeated name with the same input as the same execution. */
    private void startExecution(StoredRequest stored) {
        String input = Json.write(Map.of(
                "request_id", stored.requestId(),
                "requests_bucket", services.config().requestsBucket(),
                "request_key", StorageLayout.requestJson(stored.requestId())));
        try {
            services.sfn().startExecution(b -> b.stateMachineArn(services.config().stateMachineArn())
                    .name(stored.requestId()).input(input));
        } catch (ExecutionAlreadyExistsException e) {
            // Already started (a finished execution keeps its name for 90 days): nothing to do.
        }
    }

    private StoredRequest load(String requestId) throws IOException {
        Optional<byte[]> json = requests.read(StorageLayout.requestJson(requestId));
        return json.isEmpty() ? null : Json.MAPPER.readValue(json.get(), StoredRequest.class);
    }

    private Answer answer(StoredRequest stored, ApiRequest request) {
        String base = baseUrl(request) + "/requests/" + stored.requestId();
        return new Answer(stored.requestId(), stored.requestId(), base + "/status", base, base + "/cancel", stored.estimate());
    }

    static String sha256(String s) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                    .digest(s.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}

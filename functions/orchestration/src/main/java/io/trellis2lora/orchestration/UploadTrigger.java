package io.trellis2lora.orchestration;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Assessment;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.S3ObjectStore;
import io.trellis2lora.core.storage.S3Uri;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import java.io.IOException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.sfn.SfnClient;
import software.amazon.awssdk.services.sfn.model.ExecutionAlreadyExistsException;

/**
 * S3 ObjectCreated events (delivered through SQS) for {@code uploads/<name>.zip}: the sidecar
 * {@code uploads/<name>.json} (or the defaults when there is none) is the request, the zip its data; one execution is
 * started per (key, ETag) — its name, the request id, is derived from them, so a redelivered event finds the
 * execution already there. A sidecar that is not a valid request, or a zip that is refused, is reported in
 * {@code uploads/<name>.error.json} and starts nothing.
 */
public final class UploadTrigger {
    public static final String PREFIX = "uploads/";

    public enum Result { STARTED, DUPLICATE, REFUSED, IGNORED }

    public record Outcome(String key, Result result, String requestId, String detail) {
    }

    private final S3Client s3;
    private final SfnClient sfn;
    private final SafeHttp http;
    private final String requestsBucket;
    private final S3ObjectStore requests;
    private final String stateMachineArn;
    private final RequestValidator validator = new RequestValidator(RequestValidator.Mode.CLOUD);

    public UploadTrigger(S3Client s3, SfnClient sfn, SafeHttp http, String requestsBucket, String stateMachineArn) {
        this.s3 = s3;
        this.sfn = sfn;
        this.http = http;
        this.requestsBucket = requestsBucket;
        this.requests = new S3ObjectStore(s3, requestsBucket);
        this.stateMachineArn = stateMachineArn;
    }

    /** One SQS message body: an S3 event notification (or S3's test event, which is ignored). */
    public List<Outcome> handle(String messageBody) throws IOException {
        JsonNode event = Json.MAPPER.readTree(messageBody);
        List<Outcome> outcomes = new ArrayList<>();
        for (JsonNode record : event.path("Records")) {
            if (!record.path("eventName").asText("").startsWith("ObjectCreated:")) {
                continue;
            }
            String bucket = record.at("/s3/bucket/name").asText();
            // Keys in S3 events are URL-encoded, spaces as '+'.
            String key = URLDecoder.decode(record.at("/s3/object/key").asText(), StandardCharsets.UTF_8);
            String etag = record.at("/s3/object/eTag").asText("").replace("\"", "");
            outcomes.add(upload(bucket, key, etag));
        }
        return outcomes;
    }

    /** The request id for one upload: the same (bucket, key, ETag) always gives the same id. */
    public static String requestId(String bucket, String key, String etag) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256")
                    .digest((bucket + "\n" + key + "\n" + etag).getBytes(StandardCharsets.UTF_8));
            return "upload-" + HexFormat.of().formatHex(digest).substring(0, 32);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    Outcome upload(String bucket, String key, String etag) throws IOException {
        if (!key.startsWith(PREFIX) || !key.toLowerCase().endsWith(".zip") || etag.isEmpty()) {
            return new Outcome(key, Result.IGNORED, null, "not an uploads/*.zip object");
        }
        String name = key.substring(0, key.length() - 4);
        String requestId = requestId(bucket, key, etag);
        String requestKey = StorageLayout.requestJson(requestId);

        // request.json is written before the execution starts: finding it means this (key, ETag) came before.
        boolean seen = requests.exists(requestKey);
        java.util.concurrent.atomic.AtomicReference<String> webhook = new java.util.concurrent.atomic.AtomicReference<>();
        if (!seen) {
            StoredRequest stored;
            try {
                stored = assess(bucket, key, name, requestId, webhook);
            } catch (InputRefusedException e) {
                reportError(bucket, name, key, etag, e.problems());
                return new Outcome(key, Result.REFUSED, null, e.getMessage());
            }
            if (webhook.get() != null) {
                requests.write(StorageLayout.webhook(requestId), Json.write(Map.of("url", webhook.get()))
                        .getBytes(StandardCharsets.UTF_8), "application/json");
            }
            requests.write(requestKey, Json.pretty(stored).getBytes(StandardCharsets.UTF_8), "application/json");
        }
        String input = Json.write(Map.of("request_id", requestId, "requests_bucket", requestsBucket,
                "request_key", requestKey));
        // Started again even when seen, in case the first delivery stopped between the two writes: Step Functions
        // answers a repeated name and input with the running execution, or ExecutionAlreadyExists once it ended.
        try {
            sfn.startExecution(b -> b.stateMachineArn(stateMachineArn).name(requestId).input(input));
        } catch (ExecutionAlreadyExistsException e) {
            return new Outcome(key, Result.DUPLICATE, requestId, "already started");
        }
        return seen ? new Outcome(key, Result.DUPLICATE, requestId, "already started")
                : new Outcome(key, Result.STARTED, requestId, null);
    }

    private StoredRequest assess(String bucket, String key, String name, String requestId,
                                 java.util.concurrent.atomic.AtomicReference<String> webhook) throws IOException {
        String sidecarKey = name + ".json";
        ObjectNode body;
        byte[] sidecar = new S3ObjectStore(s3, bucket).read(sidecarKey).orElse(null);
        if (sidecar == null) {
            body = Json.MAPPER.createObjectNode();
        } else {
            JsonNode parsed;
            try {
                parsed = Json.MAPPER.readTree(sidecar);
            } catch (IOException e) {
                throw new InputRefusedException(sidecarKey + " is not valid JSON: "
                        + (e instanceof com.fasterxml.jackson.core.JsonProcessingException j ? Json.problem(j)
                        : firstLine(e.getMessage())));
            }
            if (parsed == null || !parsed.isObject()) {
                throw new InputRefusedException(sidecarKey + " must be a JSON object (the training request)");
            }
            body = (ObjectNode) parsed;
        }
        // fal_webhook is not part of the training request (submit takes it as a query parameter): kept aside for Finalize.
        JsonNode hook = body.remove("fal_webhook");
        if (hook != null) {
            String url = hook.asText("");
            if (!url.toLowerCase().startsWith("https://")) {
                throw new InputRefusedException(sidecarKey + ": fal_webhook must be an https:// URL");
            }
            webhook.set(url);
        }
        String dataUrl = new S3Uri(bucket, key).toString();
        if (body.has("data_url") && !body.get("data_url").asText().equals(dataUrl)) {
            throw new InputRefusedException(sidecarKey + ": data_url must be left out (the zip beside it is the data)");
        }
        body.put("data_url", dataUrl);
        TrainingRequest request = validator.validate(body);
        // The zip is the event's own object (this stack's uploads bucket): that bucket only.
        Assessment a = Assessment.of(request, new ArchiveOpener(s3, http, java.util.Set.of(bucket)), null);
        return new StoredRequest(requestId, Instant.now().toString(), null, a.request(), a.inputUri(),
                a.inspection(), a.estimate());
    }

    private void reportError(String bucket, String name, String key, String etag, List<String> problems) {
        ObjectNode report = Json.MAPPER.createObjectNode();
        report.put("upload", key);
        report.put("etag", etag);
        report.put("error", String.join("; ", problems));
        ArrayNode list = report.putArray("problems");
        problems.forEach(list::add);
        report.put("at", Instant.now().toString());
        new S3ObjectStore(s3, bucket).write(name + ".error.json", Json.pretty(report).getBytes(StandardCharsets.UTF_8),
                "application/json");
    }

    private static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}

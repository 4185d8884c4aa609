package io.trellis2lora.orchestration;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.model.Adapter;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.Failure;
import io.trellis2lora.core.model.FileRef;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.model.TrainingResult;
import io.trellis2lora.core.pricing.PriceBreakdown;
import io.trellis2lora.core.pricing.Pricing;
import io.trellis2lora.core.storage.ObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import java.io.IOException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The state machine's last step ({@code action: finalize}) and the Catch of each training stage
 * ({@code action: describe_failure}). Finalize merges adapters and failures in the request's order, charges the
 * succeeded stages only, writes result.json (and charge.json), records a freshly made dataset in the cache, and
 * queues the webhook when one was asked for. It answers {status: OK|ERROR, error, error_type, ...}; the state
 * machine fails the execution on ERROR.
 */
public final class Finalizer {
    /** Sends the webhook message; absent where no queue is configured (local mode). */
    public interface WebhookQueue {
        void send(String requestId, String url, JsonNode message) throws IOException;
    }

    private final ObjectStore store;
    private final WebhookQueue webhooks;

    public Finalizer(ObjectStore store, WebhookQueue webhooks) {
        this.store = store;
        this.webhooks = webhooks;
    }

    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record Outcome(
            @JsonProperty("status") String status,
            @JsonProperty("error_type") String errorType,
            @JsonProperty("error") String error,
            @JsonProperty("request_id") String requestId,
            @JsonProperty("result_uri") String resultUri,
            @JsonProperty("result") TrainingResult result,
            @JsonProperty("charge") PriceBreakdown charge) {
    }

    public JsonNode handle(JsonNode event) throws IOException {
        String action = event.path("action").asText("");
        return switch (action) {
            case "finalize" -> Json.MAPPER.valueToTree(finalize(event));
            case "describe_failure" -> Json.MAPPER.valueToTree(describeFailure(event));
            default -> throw new IllegalArgumentException("unknown action '" + action + "'");
        };
    }

    /** A training stage failed: {denoiser, error} with the one-line error from the job's report. */
    public Failure describeFailure(JsonNode event) throws IOException {
        String requestId = event.path("request_id").asText();
        Denoiser denoiser = Denoiser.parse(event.path("denoiser").asText());
        String reportKey = store.keyOf(event.path("report_uri").asText(""))
                .orElse(StorageLayout.adapterReport(requestId, denoiser));
        String error = reportError(reportKey).orElseGet(() -> fromCause(event.path("failure"), "training"));
        Failure failure = new Failure(denoiser, error);
        store.write(StorageLayout.failure(requestId, denoiser), Json.pretty(failure).getBytes(), "application/json");
        // The adapters/ folder keeps only what succeeded; the worker wrote its error report there.
        store.delete(reportKey);
        return failure;
    }

    public Outcome finalize(JsonNode event) throws IOException {
        String requestId = event.path("request_id").asText();
        StoredRequest stored = Preparer.loadRequest(store, requestId);
        TrainingRequest request = stored.request();
        JsonNode preparedNode = event.path("prepared");
        JsonNode failure = event.path("failure");
        Plan plan = preparedNode.isObject() ? Json.MAPPER.treeToValue(preparedNode, Plan.class) : null;

        List<Adapter> adapters = new ArrayList<>();
        List<Failure> failed = new ArrayList<>();
        FileRef dataset = null;
        String errorType = null;
        String reason = null;
        int objects = plan == null ? 0 : plan.objects();
        boolean reused = plan != null && !plan.needsPreprocess();

        if (plan == null) {
            errorType = "PrepareFailed";
            reason = "preparation failed: " + fromCause(failure, "preparation");
        } else if (failure.isObject()) {
            errorType = "PreprocessFailed";
            reason = "preprocessing failed: "
                    + reportError(Keys.preprocessReport(requestId)).orElseGet(() -> fromCause(failure, "preprocessing"));
        }
        if (reason != null) {
            for (Denoiser d : request.denoisers()) {
                failed.add(new Failure(d, reason));
            }
        } else {
            Map<Denoiser, JsonNode> byDenoiser = new LinkedHashMap<>();
            for (JsonNode r : event.path("stage_results")) {
                byDenoiser.put(Denoiser.parse(r.path("denoiser").asText()), r);
            }
            for (Denoiser d : request.denoisers()) {
                JsonNode r = byDenoiser.get(d);
                long size = store.size(StorageLayout.adapter(requestId, d));
                if (r == null) {
                    failed.add(new Failure(d, "the stage did not run"));
                } else if (r.hasNonNull("error")) {
                    failed.add(new Failure(d, OneLine.of(r.get("error").asText())));
                } else if (size < 0) {
                    failed.add(new Failure(d, "the training job succeeded but left no adapter file"));
                } else {
                    try {
                        adapters.add(adapterRecord(requestId, d, request));
                    } catch (BadRecord e) {
                        failed.add(new Failure(d, OneLine.of(e.getMessage())));
                    }
                }
            }
            for (Failure f : failed) {
                store.write(StorageLayout.failure(requestId, f.denoiser()), Json.pretty(f).getBytes(),
                        "application/json");
            }
            String datasetKey = plan.datasetKey();
            Optional<String> datasetStoreKey = store.keyOf(plan.datasetUri());
            long datasetSize = datasetStoreKey.isPresent() ? store.size(datasetStoreKey.get()) : -1;
            dataset = new FileRef(plan.datasetUri(), "application/zip", "preprocessed_dataset.zip",
                    datasetSize >= 0 ? datasetSize : null);
            if (plan.needsPreprocess() && datasetKey != null && datasetSize >= 0) {
                recordDataset(plan, requestId, datasetSize);
            }
            if (adapters.isEmpty()) {
                errorType = "AllStagesFailed";
                StringBuilder sb = new StringBuilder("every stage failed: ");
                for (int i = 0; i < failed.size(); i++) {
                    sb.append(i == 0 ? "" : "; ").append(failed.get(i).denoiser()).append(": ")
                            .append(failed.get(i).error());
                }
                reason = sb.toString();
            }
        }

        List<Denoiser> succeeded = adapters.stream().map(Adapter::denoiser).toList();
        JsonNode preprocessed = plan != null && plan.needsPreprocess() ? report(Keys.preprocessReport(requestId)) : null;
        Integer processed = preprocessed == null || !preprocessed.path("objects_succeeded").canConvertToInt() ? null
                : preprocessed.get("objects_succeeded").asInt();
        Integer refused = processed == null ? null : preprocessed.path("objects_failed").asInt(0);
        // The skipped object files as the estimate showed them (unknown for an archive inspected only by Prepare).
        PriceBreakdown charge = Pricing.charge(request, objects, reused, succeeded, processed, refused)
                .withSkipped(stored.inspection() == null ? null : stored.inspection().skippedObjects());
        TrainingResult result = new TrainingResult(adapters, failed, dataset);
        store.write(StorageLayout.resultJson(requestId), Json.pretty(result).getBytes(), "application/json");
        store.write(Keys.charge(requestId), Json.pretty(charge).getBytes(), "application/json");
        String status = reason == null ? "OK" : "ERROR";
        Outcome outcome = new Outcome(status, errorType, reason, requestId,
                store.uri(StorageLayout.resultJson(requestId)), result, charge);
        queueWebhook(requestId, outcome);
        return outcome;
    }

    /** Why a training job's record cannot be listed: the stage counts as failed with this line. */
    private static final class BadRecord extends RuntimeException {
        BadRecord(String message) {
            super(message);
        }
    }

    /**
     * The training job's record beside the adapter ({@code <denoiser>.json}), the one source of the result's entry:
     * checked against the request, every file in it (lora_file and any other {@code *_file}) resolved to its key in
     * this request's adapters/ folder with the stored size, the worker's other fields (metrics) passed through.
     */
    private Adapter adapterRecord(String requestId, Denoiser d, TrainingRequest request) throws IOException {
        Optional<byte[]> json = store.read(StorageLayout.adapterReport(requestId, d));
        if (json.isEmpty()) {
            throw new BadRecord("the training job succeeded but left no adapter record");
        }
        Adapter record;
        try {
            record = Json.MAPPER.readValue(json.get(), Adapter.class);
        } catch (com.fasterxml.jackson.databind.JsonMappingException e) {
            String at = e.getPath().isEmpty() ? "" : " at " + fieldPath(e);
            throw new BadRecord("the training job's adapter record is not valid" + at);
        } catch (IOException e) {
            throw new BadRecord("the training job's adapter record is not JSON");
        }
        if (record.denoiser() != d || record.loraFile() == null) {
            throw new BadRecord("the training job's adapter record is not the " + d + " adapter's");
        }
        mustMatch("resolution", record.resolution(), request.resolution());
        mustMatch("rank", record.rank(), request.rank());
        mustMatch("training_steps", record.trainingSteps(), request.trainingSteps());
        if (record.learningRate() == null || record.learningRate().compareTo(request.learningRate()) != 0) {
            throw new BadRecord("the training job's adapter record says learning_rate "
                    + (record.learningRate() == null ? "null" : record.learningRate().toPlainString())
                    + " where the request asked for " + request.learningRate().toPlainString());
        }
        String folder = StorageLayout.adapter(requestId, d);
        String adapters = folder.substring(0, folder.lastIndexOf('/') + 1);
        try {
            return record.mapFiles(f -> storedFile(f, adapters));
        } catch (IllegalArgumentException e) {
            throw new BadRecord("the training job's adapter record has a file object that is not valid");
        }
    }

    /** A file the worker named: only inside this request's adapters/ folder, and it must be there. */
    private FileRef storedFile(FileRef f, String folder) {
        String key = f.url() == null ? null : store.keyOf(f.url()).orElse(null);
        if (key == null || !key.startsWith(folder)) {
            throw new BadRecord("the training job's adapter record names a file outside the request's adapters");
        }
        long size;
        try {
            size = store.size(key);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        String name = key.substring(key.lastIndexOf('/') + 1);
        if (size < 0) {
            throw new BadRecord("the training job succeeded but left no " + name);
        }
        return new FileRef(store.uri(key), f.contentType() == null ? "application/octet-stream" : f.contentType(),
                name, size);
    }

    private static void mustMatch(String field, int recorded, int requested) {
        if (recorded != requested) {
            throw new BadRecord("the training job's adapter record says " + field + " " + recorded
                    + " where the request asked for " + requested);
        }
    }

    private static String fieldPath(com.fasterxml.jackson.databind.JsonMappingException e) {
        StringBuilder sb = new StringBuilder();
        for (var ref : e.getPath()) {
            sb.append(sb.length() == 0 ? "" : ".").append(ref.getFieldName() != null ? ref.getFieldName()
                    : String.valueOf(ref.getIndex()));
        }
        return sb.toString();
    }

    private void recordDataset(Plan plan, String requestId, long size) throws IOException {
        ObjectNode record = Json.MAPPER.createObjectNode();
        record.put("dataset_key", plan.datasetKey());
        record.put("uri", plan.datasetUri());
        record.put("size", size);
        record.put("base_model", plan.baseModel());
        record.put("objects", plan.objects());
        record.put("made_by_request", requestId);
        record.put("recorded_at", Instant.now().toString());
        store.write(Keys.datasetRecord(plan.datasetKey()), Json.pretty(record).getBytes(), "application/json");
    }

    private void queueWebhook(String requestId, Outcome outcome) throws IOException {
        Optional<String> url = webhookUrl(store, requestId);
        if (url.isEmpty() || webhooks == null) {
            return;
        }
        ObjectNode message = Json.MAPPER.createObjectNode();
        message.put("request_id", requestId);
        // The hosted queue's name for the id the caller was given; here the same one.
        message.put("gateway_request_id", requestId);
        message.put("status", outcome.status());
        message.set("payload", Json.MAPPER.valueToTree(outcome.result()));
        if (outcome.error() == null) {
            message.putNull("error");
        } else {
            message.put("error", outcome.error());
        }
        webhooks.send(requestId, url.get(), message);
    }

    /**
     * requests/&lt;id&gt;/webhook.json {"url": ...}: written by submit for its fal_webhook query parameter, and by the
     * upload trigger for a sidecar's fal_webhook field.
     */
    public static String webhookKey(String requestId) {
        return StorageLayout.webhook(requestId);
    }

    static Optional<String> webhookUrl(ObjectStore store, String requestId) throws IOException {
        Optional<byte[]> json = store.read(webhookKey(requestId));
        if (json.isEmpty()) {
            return Optional.empty();
        }
        String url = Json.MAPPER.readTree(json.get()).path("url").asText("");
        return url.isBlank() ? Optional.empty() : Optional.of(url);
    }

    /** A worker's report as JSON, or null when there is none or it is not JSON. */
    private JsonNode report(String key) throws IOException {
        Optional<byte[]> report = store.read(key);
        if (report.isEmpty()) {
            return null;
        }
        try {
            return Json.MAPPER.readTree(report.get());
        } catch (IOException e) {
            return null;
        }
    }

    /** The worker's report: {"error": "..."} on failure. */
    private Optional<String> reportError(String key) throws IOException {
        Optional<byte[]> report = store.read(key);
        if (report.isEmpty()) {
            return Optional.empty();
        }
        try {
            JsonNode node = Json.MAPPER.readTree(report.get());
            String error = node.path("error").asText("");
            return error.isBlank() ? Optional.empty() : Optional.of(OneLine.of(error));
        } catch (IOException e) {
            return Optional.empty();
        }
    }

    /**
     * When there is no report (the job never ran, was stopped, timed out): a line from what Step Functions caught —
     * a Lambda's errorMessage, or a Batch job's status reason and exit code.
     */
    static String fromCause(JsonNode failure, String what) {
        String error = failure.path("Error").asText("");
        String causeText = failure.path("Cause").asText("");
        if (error.equals("States.Timeout")) {
            return what + " ran past its time limit";
        }
        try {
            JsonNode cause = Json.MAPPER.readTree(causeText);
            if (cause != null && cause.has("errorMessage")) {
                return OneLine.of(cause.get("errorMessage").asText());
            }
            if (cause != null && cause.has("StatusReason")) {
                JsonNode container = cause.path("Container");
                String exit = container.has("ExitCode") ? " (exit code " + container.get("ExitCode").asText() + ")" : "";
                String reasonText = container.path("Reason").asText("");
                return OneLine.of(what + " job failed: " + cause.get("StatusReason").asText() + exit
                        + (reasonText.isBlank() ? "" : ": " + reasonText));
            }
        } catch (IOException | RuntimeException e) {
            // Not JSON: fall through to the raw text.
        }
        String line = OneLine.of(causeText);
        return line.isEmpty() ? what + " failed (" + (error.isEmpty() ? "unknown error" : error) + ")" : line;
    }
}

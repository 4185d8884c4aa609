package io.trellis2lora.core.storage;

import io.trellis2lora.core.model.Denoiser;
import java.util.regex.Pattern;

/** The fixed key layout of the requests bucket (or of the directory that stands in for it in local mode). */
public final class StorageLayout {
    /** Request ids become S3 key parts and execution names: letters, digits and dashes only. */
    private static final Pattern REQUEST_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9-]{0,79}");

    private StorageLayout() {
    }

    public static boolean isValidRequestId(String id) {
        return id != null && REQUEST_ID.matcher(id).matches();
    }

    public static String requestPrefix(String requestId) {
        if (!isValidRequestId(requestId)) {
            throw new IllegalArgumentException("not a request id: " + requestId);
        }
        return "requests/" + requestId + "/";
    }

    public static String requestJson(String requestId) {
        return requestPrefix(requestId) + "request.json";
    }

    public static String resultJson(String requestId) {
        return requestPrefix(requestId) + "result.json";
    }

    /**
     * {"url": ...}: where Finalize POSTs the completion (submit's fal_webhook query parameter, or an upload
     * sidecar's fal_webhook field).
     */
    public static String webhook(String requestId) {
        return requestPrefix(requestId) + "webhook.json";
    }

    /** Where Prepare copies an https archive whose server ignores Range requests (the jobs then read the copy). */
    public static String stagedInput(String requestId) {
        return requestPrefix(requestId) + "input.zip";
    }

    public static String adapter(String requestId, Denoiser d) {
        return requestPrefix(requestId) + "adapters/" + d.wireName() + ".safetensors";
    }

    /**
     * The training job's report beside the adapter: on success the adapter's record (the result lists it), on failure
     * {"error": ...}.
     */
    public static String adapterReport(String requestId, Denoiser d) {
        return requestPrefix(requestId) + "adapters/" + d.wireName() + ".json";
    }

    public static String failure(String requestId, Denoiser d) {
        return requestPrefix(requestId) + "failures/" + d.wireName() + ".json";
    }

    public static String dataset(String datasetKey) {
        if (!datasetKey.matches("[A-Za-z0-9_-]{1,128}")) {
            throw new IllegalArgumentException("not a dataset key: " + datasetKey);
        }
        return "datasets/" + datasetKey + "/preprocessed.zip";
    }
}

package io.trellis2lora.orchestration;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.JobQueueView;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.pricing.PriceBreakdown;
import io.trellis2lora.core.pricing.Pricing;
import io.trellis2lora.core.storage.DirectoryObjectStore;
import io.trellis2lora.core.storage.ObjectStore;
import io.trellis2lora.core.storage.S3ObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.RangeSource;
import io.trellis2lora.core.zip.S3Stager;
import io.trellis2lora.core.zip.Stager;
import io.trellis2lora.core.zip.TempFileStager;
import io.trellis2lora.core.zip.ZipInspection;
import io.trellis2lora.core.zip.ZipInspector;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * State machine step 1: reads request.json, inspects the archive, looks up a cached dataset made from the same input
 * bytes at the same resolution with the same base model, prices the request, and writes down every job's command.
 *
 * <p>The jobs are pinned to the bytes inspected here: Prepare records their size and sha256 (which it computes
 * anyway for the dataset key) with the entry count, declared size and object list in requests/&lt;id&gt;/input.json,
 * and the worker refuses (exit 2) an input that is not that archive. Chosen over staging every https input into the
 * requests bucket because it costs no second copy of a multi-GB archive, and it covers s3:// inputs too (an object
 * overwritten, or re-uploaded through its presigned URL, between Prepare and the job).
 *
 * <p>An https archive whose server ignores Range requests cannot be inspected without downloading it, which the
 * API's 29 s do not allow: submit accepts it with a provisional price and Prepare (up to 15 minutes) copies it
 * to requests/&lt;id&gt;/input.zip, hashing it on the way, inspects the copy and hands the jobs the copy.
 */
public final class Preparer {
    public static final String DEFAULT_BASE_MODEL = "microsoft/TRELLIS.2-4B";
    private static final int HASH_CHUNK = 8 * 1024 * 1024;

    private final ObjectStore store;
    private final ArchiveOpener opener;
    private final String baseModel;
    private final List<String> preprocessOptions;
    private final Sharding sharding;

    /**
     * @param baseModel         what the worker's {@code --base} gets: a Hugging Face repo id, a directory, or "tiny"
     * @param preprocessOptions extra options for {@code trellis2-worker preprocess} (e.g. --render-size 256)
     */
    public Preparer(ObjectStore store, ArchiveOpener opener, String baseModel, List<String> preprocessOptions) {
        this(store, opener, baseModel, preprocessOptions, Sharding.OFF);
    }

    /** @param sharding how many preprocess jobs a raw archive's objects are spread over */
    public Preparer(ObjectStore store, ArchiveOpener opener, String baseModel, List<String> preprocessOptions,
                    Sharding sharding) {
        this.store = store;
        this.opener = opener;
        this.baseModel = baseModel == null || baseModel.isBlank() ? DEFAULT_BASE_MODEL : baseModel;
        this.preprocessOptions = List.copyOf(preprocessOptions);
        this.sharding = sharding;
    }

    /** Where an archive whose server ignores Range is copied: beside request.json, in this store. */
    private Stager stager(String requestId) {
        String key = StorageLayout.stagedInput(requestId);
        if (store instanceof S3ObjectStore s3) {
            return new S3Stager(s3.client(), s3.bucket(), key);
        }
        if (store instanceof DirectoryObjectStore dir) {
            return new TempFileStager(dir.path(key));
        }
        throw new IllegalStateException("no staging into " + store.getClass().getSimpleName());
    }

    /** TRELLIS2_PREPROCESS_OPTIONS, split on spaces (the deployment's extra preprocess options). */
    public static List<String> options(String text) {
        return text == null || text.isBlank() ? List.of() : List.of(text.trim().split("\\s+"));
    }

    public Plan prepare(JsonNode event) throws IOException {
        String requestId = event.path("request_id").asText(null);
        if (!StorageLayout.isValidRequestId(requestId)) {
            throw new IllegalArgumentException("Prepare needs a request_id, got " + event);
        }
        StoredRequest stored = loadRequest(store, requestId);
        TrainingRequest request = stored.request();
        String inputUri = stored.inputUri() != null ? stored.inputUri() : request.dataUrl();

        ZipInspector.Inspected inspected;
        String contentSha256;
        try (ArchiveOpener.Opened opened = opener.open(inputUri, stager(requestId))) {
            inspected = ZipInspector.inspectListing(opened.source(), request.resolution());
            contentSha256 = opened.stagedSha256() != null ? opened.stagedSha256() : sha256(opened.source());
            inputUri = opened.inputUri();
        }
        ZipInspection inspection = inspected.inspection();
        String record = store.uri(Keys.inputRecord(requestId));
        store.write(Keys.inputRecord(requestId), Json.MAPPER.writeValueAsBytes(new InputRecord(inputUri,
                inspection.archiveBytes(), contentSha256, inspection.entries(), inspection.uncompressedBytes(),
                inspected.objectPaths())), "application/json");

        boolean preprocessed = inspection.kind() == ZipInspection.Kind.PREPROCESSED;
        String datasetKey;
        String datasetUri;
        boolean cached;
        if (preprocessed) {
            String madeWith = inspection.preparedDataset().baseModel();
            if (madeWith != null && !sameBase(madeWith, baseModel)) {
                throw new InputRefusedException("the preprocessed dataset was made with the base model '" + madeWith
                        + "', but this deployment trains '" + baseModel + "'; send the raw assets instead");
            }
            datasetKey = null;
            datasetUri = inputUri;
            cached = false;
        } else {
            datasetKey = datasetKey(contentSha256, request.resolution(), baseModel);
            datasetUri = store.uri(StorageLayout.dataset(datasetKey));
            cached = store.exists(Keys.datasetRecord(datasetKey)) && store.exists(StorageLayout.dataset(datasetKey));
        }
        boolean needsPreprocess = !preprocessed && !cached;
        PriceBreakdown estimate = Pricing.estimate(request, inspection.objects(), !needsPreprocess);

        Plan.Job preprocess = null;
        Plan.Job merge = null;
        int shards = needsPreprocess ? sharding.shards(inspected.distinctObjects().size()) : 0;
        if (shards == 1) {
            String report = store.uri(Keys.preprocessReport(requestId));
            List<String> command = new ArrayList<>(List.of(
                    "preprocess", "--input", inputUri, "--resolution", String.valueOf(request.resolution()),
                    "--base", baseModel, "--output", datasetUri, "--report", report, "--input-record", record));
            command.addAll(preprocessOptions);
            preprocess = new Plan.Job(jobName(requestId, "preprocess"), command, datasetUri, report);
        } else if (shards > 1) {
            preprocess = shardJob(requestId, request.resolution(), inputUri, record, inspected.distinctObjects(),
                    shards);
            merge = mergeJob(requestId, request.resolution(), datasetUri, preprocess, shards);
        }
        List<Plan.Stage> stages = new ArrayList<>();
        for (Denoiser d : request.denoisers()) {
            String output = store.uri(StorageLayout.adapter(requestId, d));
            String report = store.uri(StorageLayout.adapterReport(requestId, d));
            List<String> command = new ArrayList<>(List.of(
                    "train", "--dataset", datasetUri, "--denoiser", d.wireName(),
                    "--resolution", String.valueOf(request.resolution()), "--rank", String.valueOf(request.rank()),
                    "--learning-rate", request.learningRate().toPlainString(),
                    "--training-steps", String.valueOf(request.trainingSteps()),
                    "--base", baseModel, "--output", output, "--report", report));
            if (preprocessed) {
                command.addAll(List.of("--dataset-record", record));  // the user's dataset: pinned as inspected
            }
            if (!request.evaluate()) {
                command.addAll(List.of("--eval-objects", "0"));  // "evaluate": false: no held-out evaluation
            }
            stages.add(new Plan.Stage(requestId, d, jobName(requestId, d.wireName()), List.copyOf(command), output,
                    report));
        }
        return new Plan(requestId, baseModel, preprocessed ? "preprocessed" : "raw", inputUri, inspection.objects(),
                datasetKey, datasetUri, cached, needsPreprocess, estimate, preprocess, Math.max(shards, 1), merge,
                stages, stages.size());
    }

    /**
     * The array job's command (every child runs it; the worker takes its index from AWS_BATCH_JOB_ARRAY_INDEX) after
     * writing the plan it cuts: the objects as the worker would pick them (the manifest's selection, one path per
     * distinct content), in path order.
     */
    private Plan.Job shardJob(String requestId, int resolution, String inputUri, String record, List<String> objects,
                              int shards) throws IOException {
        String plan = store.uri(Keys.shardPlan(requestId));
        store.write(Keys.shardPlan(requestId), Json.MAPPER.writeValueAsBytes(
                Map.of("objects", objects.stream().map(f -> Map.of("file", f)).toList())),
                "application/json");
        String output = store.uri(Keys.shardOutput(requestId));
        String report = store.uri(Keys.shardReport(requestId));
        List<String> command = new ArrayList<>(List.of(
                "preprocess", "--input", inputUri, "--input-record", record, "--resolution", String.valueOf(resolution),
                "--base", baseModel));
        command.addAll(preprocessOptions);
        command.addAll(List.of("--objects-from", plan, "--shard-count", String.valueOf(shards),
                "--output", output, "--report", report));
        return new Plan.Job(jobName(requestId, "preprocess"), command, output, report);
    }

    /** The merge of the shards' datasets into the one dataset and the one preprocess report Finalize reads. */
    private Plan.Job mergeJob(String requestId, int resolution, String datasetUri, Plan.Job shardJob, int shards) {
        String report = store.uri(Keys.preprocessReport(requestId));
        List<String> command = List.of(
                "merge", "--plan", store.uri(Keys.shardPlan(requestId)), "--shard-count", String.valueOf(shards),
                "--resolution", String.valueOf(resolution), "--base", baseModel,
                "--shard-outputs", shardJob.outputUri(), "--shard-reports", shardJob.reportUri(),
                "--output", datasetUri, "--report", report);
        return new Plan.Job(jobName(requestId, "merge"), command, datasetUri, report);
    }

    /**
     * requests/&lt;id&gt;/input.json, what the worker checks its input against (trellis2_worker.ingest.archive's
     * recorded_input): the inspected bytes, and what their central directory says.
     *
     * @param objects the 3D object files' canonical paths, sorted; null for a preprocessed dataset
     */
    public record InputRecord(
            @JsonProperty("uri") String uri,
            @JsonProperty("bytes") long bytes,
            @JsonProperty("sha256") String sha256,
            @JsonProperty("entries") int entries,
            @JsonProperty("declared_bytes") long declaredBytes,
            @JsonProperty("objects") List<String> objects) {
    }

    public static StoredRequest loadRequest(ObjectStore store, String requestId) throws IOException {
        byte[] json = store.read(StorageLayout.requestJson(requestId))
                .orElseThrow(() -> new IllegalStateException("no request.json for request " + requestId));
        return Json.MAPPER.readValue(json, StoredRequest.class);
    }

    /** dataset_key = hash of (input zip bytes, resolution, base model), as ARCHITECTURE.md fixes it. */
    public static String datasetKey(String contentSha256, int resolution, String baseModel) {
        return sha256Hex((contentSha256 + "\n" + resolution + "\n" + baseModel).getBytes(StandardCharsets.UTF_8));
    }

    /** Batch job names: letters, digits, dashes and underscores, at most 128; status finds them by the prefix. */
    static String jobName(String requestId, String what) {
        String name = (JobQueueView.jobNamePrefix(requestId) + what).replaceAll("[^A-Za-z0-9_-]", "-");
        return name.length() > 128 ? name.substring(0, 128) : name;
    }

    private static boolean sameBase(String a, String b) {
        return a.equals(b) || lastPart(a).equals(lastPart(b));
    }

    private static String lastPart(String s) {
        String t = s.replaceAll("/+$", "");
        return t.substring(t.lastIndexOf('/') + 1);
    }

    /** Streams the archive through SHA-256 in large ranged reads (one GET per 8 MiB on S3). */
    static String sha256(RangeSource source) throws IOException {
        MessageDigest md = digest();
        long size = source.size();
        for (long offset = 0; offset < size; offset += HASH_CHUNK) {
            md.update(source.read(offset, (int) Math.min(HASH_CHUNK, size - offset)));
        }
        return HexFormat.of().formatHex(md.digest());
    }

    static String sha256Hex(byte[] data) {
        return HexFormat.of().formatHex(digest().digest(data));
    }

    private static MessageDigest digest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}

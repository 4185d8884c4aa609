package io.trellis2lora.local;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.api.SubmitOperation;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.DirectoryObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.validation.RequestFiles;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.local.asl.BatchSyncBinding;
import io.trellis2lora.local.asl.Execution;
import io.trellis2lora.local.asl.ExecutionListener;
import io.trellis2lora.local.asl.LambdaBinding;
import io.trellis2lora.local.asl.StateMachine;
import io.trellis2lora.orchestration.Finalizer;
import io.trellis2lora.orchestration.Preparer;
import io.trellis2lora.orchestration.Sharding;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.stream.Stream;

/**
 * The embedded local mode: runs the state machine definition of step-functions/ on this machine, with a directory
 * standing in for the requests bucket, the Lambda tasks answered by the Prepare and Finalize classes in-process, and
 * the Batch tasks run as worker processes ({@code bin/trellis2-worker}, one per job; training stages, and the
 * children of a sharded preprocessing's array job, in parallel).
 */
public final class LocalRunner {
    public static final String DEFINITION = "trellis2-lora.asl.json";
    /** What CloudFormation's DefinitionSubstitutions would fill in, pointing at the local bindings. */
    public static final Map<String, String> SUBSTITUTIONS = Map.of(
            "PrepareFunctionArn", "arn:aws:lambda:local:000000000000:function:trellis2-prepare",
            "FinalizeFunctionArn", "arn:aws:lambda:local:000000000000:function:trellis2-finalize",
            "JobQueueArn", "arn:aws:batch:local:000000000000:job-queue/trellis2-local",
            "PreprocessJobDefinitionArn", "arn:aws:batch:local:000000000000:job-definition/trellis2-preprocess",
            "TrainJobDefinitionArn", "arn:aws:batch:local:000000000000:job-definition/trellis2-train",
            "MergeJobQueueArn", "arn:aws:batch:local:000000000000:job-queue/trellis2-local-cpu",
            "MergeJobDefinitionArn", "arn:aws:batch:local:000000000000:job-definition/trellis2-merge",
            "RequestsBucket", "local");

    private final Path out;
    private final String baseModel;
    private final List<String> workerCommand;
    private final ExecutionListener listener;
    private List<String> preprocessOptions = List.of();
    private int preprocessShards = 1;

    /**
     * @param out           the storage directory (requests/, datasets/) and where result.json is copied
     * @param workerCommand how to start the worker, e.g. [repo/bin/trellis2-worker]
     */
    public LocalRunner(Path out, String baseModel, List<String> workerCommand, ExecutionListener listener) {
        this.out = out.toAbsolutePath().normalize();
        this.baseModel = baseModel;
        this.workerCommand = List.copyOf(workerCommand);
        this.listener = listener;
    }

    /** Extra options for the preprocess job, e.g. [--render-size, 256]. */
    public LocalRunner preprocessOptions(List<String> options) {
        this.preprocessOptions = List.copyOf(options);
        return this;
    }

    /**
     * Preprocessing as {@code shards} parallel worker processes (fewer when there are fewer objects), each on its block
     * of the plan, then merged, as the cloud's array job; 1 (the default) is one preprocess process.
     */
    public LocalRunner preprocessShards(int shards) {
        Sharding.exactly(shards);  // refuses a count out of range
        this.preprocessShards = shards;
        return this;
    }

    public static String definitionText() throws IOException {
        try (InputStream in = LocalRunner.class.getResourceAsStream(DEFINITION)) {
            if (in == null) {
                throw new IllegalStateException(DEFINITION + " is not on the classpath (build functions/local)");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    /** Validates the request file and stores request.json as submit would; returns the new request id. */
    public String submit(Path requestFile) throws IOException {
        return submit(requestFile, true).requestId();
    }

    /** The request id a run goes on with, and whether it is an earlier run's of the same request file. */
    public record Submission(String requestId, boolean resumed) {
    }

    /**
     * Like {@link #submit(Path)}, but the same request file (same path, same bytes) in this storage directory goes on
     * as the request id it had before, so its training jobs resume from their checkpoints; {@code fresh} starts a new
     * request id instead and removes the earlier one's checkpoints, which nothing would resume any more.
     */
    public Submission submit(Path requestFile, boolean fresh) throws IOException {
        TrainingRequest request = new RequestValidator(RequestValidator.Mode.LOCAL)
                .parse(RequestFiles.read(requestFile));
        request = request.withDataUrl(RequestFiles.resolve(requestFile, request.dataUrl()));
        String key = requestFileKey(requestFile);
        ObjectNode index = readIndex();
        String earlier = index.path(key).asText(null);
        if (earlier != null && !StorageLayout.isValidRequestId(earlier)) {
            earlier = null;  // an index edited by hand: that entry is ignored
        }
        boolean resumed = false;
        String requestId;
        if (earlier != null && !fresh && Files.isRegularFile(out.resolve(StorageLayout.requestJson(earlier)))) {
            requestId = earlier;
            resumed = true;
        } else {
            if (earlier != null) {
                removeCheckpoints(earlier);
            }
            requestId = LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + "-"
                    + UUID.randomUUID().toString().substring(0, 8);
        }
        // The API's submit step on the storage directory; the execution is started by start() instead.
        try (SafeHttp http = new SafeHttp(AddressPolicy.fromEnvironment(System::getenv))) {
            new SubmitOperation(new DirectoryObjectStore(out), new ArchiveOpener(null, http), stored -> { })
                    .submit(request, requestId, null);
        }
        index.put(key, requestId);
        Files.writeString(out.resolve(REQUEST_INDEX), Json.pretty(index));
        return new Submission(requestId, resumed);
    }

    /** The storage directory's record of which request id each request file went on as. */
    static final String REQUEST_INDEX = "local-requests.json";
    /** The worker's checkpoint beside each adapter (train/checkpoint.py names it). */
    static final String CHECKPOINT_SUFFIX = ".checkpoint.safetensors";

    private static String requestFileKey(Path requestFile) throws IOException {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(requestFile.toAbsolutePath().normalize().toString().getBytes(StandardCharsets.UTF_8));
            sha.update((byte) 0);
            sha.update(Files.readAllBytes(requestFile));
            return HexFormat.of().formatHex(sha.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private ObjectNode readIndex() throws IOException {
        Path file = out.resolve(REQUEST_INDEX);
        if (Files.isRegularFile(file)) {
            try {
                JsonNode node = Json.MAPPER.readTree(file.toFile());
                if (node instanceof ObjectNode o) {
                    return o;
                }
            } catch (IOException unreadable) {
                // a damaged index only loses the resume: every request starts afresh
            }
        }
        return Json.MAPPER.createObjectNode();
    }

    /**
     * Removes the training checkpoints a request's jobs left (a stage that failed, or a run that will not resume);
     * called once a run has ended other than by being stopped, whose checkpoints a rerun resumes from.
     */
    public void removeCheckpoints(String requestId) throws IOException {
        Path dir = out.resolve(StorageLayout.requestPrefix(requestId));
        if (!Files.isDirectory(dir)) {
            return;
        }
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path p : files.filter(f -> f.getFileName().toString().endsWith(CHECKPOINT_SUFFIX)).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    /** Starts the execution named {@code requestId} (request.json must be stored); returns at once. */
    public Execution start(String requestId) throws IOException {
        DirectoryObjectStore store = new DirectoryObjectStore(out);
        Preparer preparer;
        SafeHttp http = new SafeHttp(AddressPolicy.fromEnvironment(System::getenv));
        preparer = new Preparer(store, new ArchiveOpener(null, http), baseModel, preprocessOptions,
                Sharding.exactly(preprocessShards));
        Finalizer finalizer = new Finalizer(store, null);
        StateMachine machine = StateMachine.load(definitionText(), SUBSTITUTIONS);
        LambdaBinding lambdas = new LambdaBinding(Map.of(
                SUBSTITUTIONS.get("PrepareFunctionArn"), event -> Json.MAPPER.valueToTree(preparer.prepare(event)),
                SUBSTITUTIONS.get("FinalizeFunctionArn"), finalizer::handle));
        BatchSyncBinding batch = new BatchSyncBinding(Map.of(
                SUBSTITUTIONS.get("PreprocessJobDefinitionArn"), workerCommand,
                SUBSTITUTIONS.get("TrainJobDefinitionArn"), workerCommand,
                SUBSTITUTIONS.get("MergeJobDefinitionArn"), workerCommand),
                Map.of(SUBSTITUTIONS.get("TrainJobDefinitionArn"), trainEnvironment(store, requestId),
                        SUBSTITUTIONS.get("PreprocessJobDefinitionArn"),
                        preprocessShards > 1 ? threads(preprocessShards) : Map.of()), out);
        ObjectNode input = Json.MAPPER.createObjectNode();
        input.put("request_id", requestId);
        return new Execution(machine, requestId, input, List.of(lambdas, batch), listener,
                item -> item.path("denoiser").asText(null)).start();
    }

    /**
     * The training jobs run side by side, as Batch runs them on separate hosts; here they share this machine's cores,
     * so each gets its share of compute threads. More threads than cores in all makes every job slower (spinning
     * OpenMP workers take each other's cores), not just the sum of them. A thread count the user exported wins.
     */
    static Map<String, String> trainEnvironment(DirectoryObjectStore store, String requestId) throws IOException {
        if (System.getenv("OMP_NUM_THREADS") != null) {
            return Map.of();
        }
        Optional<byte[]> stored = store.read(StorageLayout.requestJson(requestId));
        int stages = stored.isEmpty() ? 1
                : Json.MAPPER.readValue(stored.get(), StoredRequest.class).request().denoisers().size();
        return threads(stages);
    }

    /** The compute threads of one of {@code parallelJobs} jobs sharing this machine (a user's export wins). */
    static Map<String, String> threads(int parallelJobs) {
        if (System.getenv("OMP_NUM_THREADS") != null) {
            return Map.of();
        }
        String threads = String.valueOf(threadsPerJob(Runtime.getRuntime().availableProcessors(), parallelJobs));
        return Map.of("OMP_NUM_THREADS", threads, "MKL_NUM_THREADS", threads);
    }

    public static int threadsPerJob(int cores, int parallelJobs) {
        return Math.max(1, cores / Math.max(1, parallelJobs));
    }

    /** After the end: DIR/result.json, a copy of requests/&lt;id&gt;/result.json. Null when there is none. */
    public Path publishResult(String requestId) throws IOException {
        Path result = out.resolve(StorageLayout.resultJson(requestId));
        if (!Files.isRegularFile(result)) {
            return null;
        }
        Path target = out.resolve("result.json");
        Files.copy(result, target, StandardCopyOption.REPLACE_EXISTING);
        return target;
    }

    public Path out() {
        return out;
    }

    public static JsonNode readJson(Path p) throws IOException {
        return Json.MAPPER.readTree(p.toFile());
    }
}

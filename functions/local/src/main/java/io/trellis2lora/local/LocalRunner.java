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
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;

/**
 * The embedded local mode: runs the state machine definition of step-functions/ on this machine, with a directory
 * standing in for the requests bucket, the Lambda tasks answered by the Prepare and Finalize classes in-process, and
 * the Batch tasks run as worker processes ({@code bin/trellis2-worker}, one per job, training stages in parallel).
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
            "RequestsBucket", "local");

    private final Path out;
    private final String baseModel;
    private final List<String> workerCommand;
    private final ExecutionListener listener;
    private List<String> preprocessOptions = List.of();

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
        TrainingRequest request = new RequestValidator(RequestValidator.Mode.LOCAL)
                .parse(RequestFiles.read(requestFile));
        request = request.withDataUrl(RequestFiles.resolve(requestFile, request.dataUrl()));
        String requestId = LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + "-"
                + UUID.randomUUID().toString().substring(0, 8);
        // The API's submit step on the storage directory; the execution is started by start() instead.
        try (SafeHttp http = new SafeHttp(AddressPolicy.fromEnvironment(System::getenv))) {
            new SubmitOperation(new DirectoryObjectStore(out), new ArchiveOpener(null, http), stored -> { })
                    .submit(request, requestId, null);
        }
        return requestId;
    }

    /** Starts the execution named {@code requestId} (request.json must be stored); returns at once. */
    public Execution start(String requestId) throws IOException {
        DirectoryObjectStore store = new DirectoryObjectStore(out);
        Preparer preparer;
        SafeHttp http = new SafeHttp(AddressPolicy.fromEnvironment(System::getenv));
        preparer = new Preparer(store, new ArchiveOpener(null, http), baseModel, preprocessOptions);
        Finalizer finalizer = new Finalizer(store, null);
        StateMachine machine = StateMachine.load(definitionText(), SUBSTITUTIONS);
        LambdaBinding lambdas = new LambdaBinding(Map.of(
                SUBSTITUTIONS.get("PrepareFunctionArn"), event -> Json.MAPPER.valueToTree(preparer.prepare(event)),
                SUBSTITUTIONS.get("FinalizeFunctionArn"), finalizer::handle));
        BatchSyncBinding batch = new BatchSyncBinding(Map.of(
                SUBSTITUTIONS.get("PreprocessJobDefinitionArn"), workerCommand,
                SUBSTITUTIONS.get("TrainJobDefinitionArn"), workerCommand),
                Map.of(SUBSTITUTIONS.get("TrainJobDefinitionArn"), trainEnvironment(store, requestId)), out);
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
        String threads = String.valueOf(threadsPerJob(Runtime.getRuntime().availableProcessors(), stages));
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

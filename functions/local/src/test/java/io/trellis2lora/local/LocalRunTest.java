package io.trellis2lora.local;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.TestPaths;
import io.trellis2lora.local.asl.AslError;
import io.trellis2lora.local.asl.Execution;
import io.trellis2lora.local.asl.ExecutionListener;
import io.trellis2lora.orchestration.Keys;
import java.io.IOException;
import java.math.BigDecimal;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * The state machine definition executed end to end on this machine with the real worker (tiny base, 100 steps, two
 * stages, a third failed by a labelled fault injector) on a zip made from ../shared/assets/real. The tests share one
 * storage directory, in order: the full run, a rerun that reuses the dataset where every stage fails, failed
 * preprocessing and preparation, and a cancelled run.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class LocalRunTest {
    private static Path out;
    private static Path request;
    private static Path worker;

    /** Records the states entered, as Step Functions' execution history would. */
    static final class History implements ExecutionListener {
        final List<String> entered = Collections.synchronizedList(new ArrayList<>());
        final List<String> lines = Collections.synchronizedList(new ArrayList<>());

        @Override
        public void stateEntered(String label, String state) {
            entered.add(label.isEmpty() ? state : label + "/" + state);
        }

        @Override
        public void output(String label, String state, String line) {
            lines.add(label + " " + state + ": " + line);
        }

        @Override
        public void caught(String label, String state, AslError error, String next) {
            lines.add(label + " " + state + " caught " + error.error());
        }

        long count(String suffix) {
            return entered.stream().filter(s -> s.endsWith(suffix)).count();
        }
    }

    @BeforeAll
    static void setUp() throws IOException {
        Path target = TestPaths.repo().resolve("functions/local/target/local-run-test");
        deleteTree(target);
        out = Files.createDirectories(target.resolve("storage"));
        Path zip = target.resolve("assets.zip");
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
            // Two real objects with few latent tokens (a textured OBJ with its .mtl and images, and a PLY), so that
            // 100 real CPU training steps per stage take minutes; the worker's own tests cover the larger assets.
            for (String asset : List.of("assimp/OBJ/spider.obj", "assimp/OBJ/spider.mtl", "assimp/OBJ/SpiderTex.jpg",
                    "assimp/OBJ/drkwood2.jpg", "assimp/OBJ/engineflare1.jpg", "assimp/OBJ/wal67ar_small.jpg",
                    "assimp/OBJ/wal69ar_small.jpg", "assimp/PLY/float-color.ply")) {
                z.putNextEntry(new ZipEntry("my assets/" + asset.substring(asset.lastIndexOf('/') + 1)));
                z.write(Files.readAllBytes(TestPaths.realAssets().resolve(asset)));
                z.closeEntry();
            }
        }
        request = target.resolve("request.json");
        Files.writeString(request, Json.write(Map.of("data_url", "assets.zip",
                "denoisers", List.of("sparse_structure", "geometry", "texture"), "resolution", 512, "rank", 16,
                "learning_rate", 0.0001, "training_steps", 100)));
        worker = TestPaths.repo().resolve("bin/trellis2-worker");
    }

    private static LocalRunner runner(List<String> workerCommand, History history) {
        return new LocalRunner(out, "tiny", workerCommand, history).preprocessOptions(List.of("--render-size", "64"));
    }

    /**
     * TEST STAND-IN, not the worker: a fault injector in front of the real worker. `train --denoiser D` for the
     * listed denoisers fails the way the worker reports a failure (its --report gets {"error": ...}, exit 1); every
     * other command goes to the real worker unchanged.
     */
    private static List<String> failing(String... denoisers) throws IOException {
        Path script = out.getParent().resolve("fault-injecting-worker.sh");
        Files.writeString(script, """
                #!/bin/sh
                # TEST STAND-IN (fault injection), see LocalRunTest.failing
                fail=" $1 "; shift
                echo "$1" >> "%s"
                if [ "$1" = "preprocess" ]; then
                  case "$fail" in *" preprocess "*)
                    prev=""; r=""
                    for a in "$@"; do
                      case "$prev" in --report) r="$a";; esac
                      prev="$a"
                    done
                    mkdir -p "$(dirname "$r")"
                    printf '{"error": "injected failure: no usable 3D object in the archive"}\n' > "$r"
                    exit 2;;
                  esac
                fi
                if [ "$1" = "train" ]; then
                  prev=""; d=""; r=""
                  for a in "$@"; do
                    case "$prev" in --denoiser) d="$a";; --report) r="$a";; esac
                    prev="$a"
                  done
                  case "$fail" in *" $d "*)
                    mkdir -p "$(dirname "$r")"
                    printf '{"error": "injected failure: %%s diverged at step 1"}\\n' "$d" > "$r"
                    echo "trellis2-worker: injected failure for $d" >&2
                    exit 1;;
                  esac
                fi
                exec "%s" "$@"
                """.formatted(invocations(), worker));
        Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwxr-xr-x"));
        return List.of(script.toString(), String.join(" ", denoisers));
    }

    /** Preprocess commands the fault injector has seen so far, across the tests that share it. */
    private static long preprocessRuns() throws IOException {
        Path log = invocations();
        return Files.exists(log) ? Files.readAllLines(log).stream().filter(l -> l.equals("preprocess")).count() : 0;
    }

    /** One line per command the fault injector was given. */
    private static Path invocations() {
        return out.getParent().resolve("invocations.log");
    }

    private static JsonNode json(Path p) throws IOException {
        return Json.MAPPER.readTree(p.toFile());
    }

    @Test
    @Order(1)
    void aFullRunTrainsTheStagesAndAFailedStageLeavesTheOthers() throws Exception {
        History history = new History();
        // Real preprocessing and real training of sparse_structure and texture; geometry fails (fault injector).
        LocalRunner runner = runner(failing("geometry"), history);
        String id = runner.submit(request);
        Execution execution = runner.start(id);
        assertEquals(Execution.Status.SUCCEEDED, execution.await(), () -> execution.error() + ": "
                + execution.cause() + "\n" + String.join("\n", history.lines));

        // The definition's states, as walked: preprocessing once, then the three stages side by side.
        assertEquals(List.of("Init", "Prepare", "PreprocessOrCached", "Preprocess", "Train"),
                history.entered.subList(0, 5));
        assertEquals(3, history.count("TrainStage"));
        assertEquals(2, history.count("StageSucceeded"));
        assertTrue(history.entered.contains("Train[geometry]/StageFailed"));
        assertEquals("Finalize", history.entered.get(history.entered.size() - 3));

        Path resultFile = runner.publishResult(id);
        assertEquals(out.resolve("result.json"), resultFile);
        JsonNode result = json(resultFile);
        assertEquals(2, result.get("adapters").size());
        for (int i = 0; i < 2; i++) {
            JsonNode a = result.get("adapters").get(i);
            assertEquals(List.of("sparse_structure", "texture").get(i), a.get("denoiser").asText(), "request order");
            Path lora = Path.of(a.at("/lora_file/url").asText());
            assertTrue(Files.isRegularFile(lora), lora + " is missing");
            assertEquals(Files.size(lora), a.at("/lora_file/file_size").asLong());
            assertEquals(16, a.get("rank").asInt());
            assertEquals(100, a.get("training_steps").asInt());
            assertTrue(Files.isRegularFile(lora.resolveSibling(a.get("denoiser").asText() + ".json")), "adapter record");
            // The worker's record is the entry: its metrics, and its other files resolved like lora_file.
            assertTrue(a.path("metrics").isObject() && a.path("metrics").size() > 0, a.toString());
            Path comfy = Path.of(a.at("/comfyui_lora_file/url").asText());
            assertEquals(lora.resolveSibling(a.get("denoiser").asText() + ".comfyui.safetensors"), comfy);
            assertEquals(Files.size(comfy), a.at("/comfyui_lora_file/file_size").asLong());
        }
        assertEquals(1, result.get("failed").size());
        assertEquals("geometry", result.at("/failed/0/denoiser").asText());
        assertEquals("injected failure: geometry diverged at step 1", result.at("/failed/0/error").asText());
        assertTrue(Files.isRegularFile(out.resolve(StorageLayout.requestPrefix(id) + "failures/geometry.json")));
        assertFalse(Files.exists(out.resolve(StorageLayout.requestPrefix(id) + "adapters/geometry.json")));

        Path dataset = Path.of(result.at("/preprocessed_data_file/url").asText());
        assertTrue(Files.isRegularFile(dataset));
        assertTrue(dataset.startsWith(out.resolve("datasets")));
        assertTrue(Files.isRegularFile(dataset.resolveSibling("dataset.json")), "the dataset is recorded in the cache");
        // Charged: preparation (10-object minimum) and the two stages that succeeded, at rank 16 (× 0.5):
        // 1.0023 + 100 × 0.008337 × 0.5 + 100 × 0.003378 × 0.5.
        JsonNode charge = json(out.resolve(Keys.charge(id)));
        assertEquals(0, new BigDecimal("1.0023").compareTo(charge.at("/preparation/amount").decimalValue()));
        assertEquals(2, charge.get("stages").size());
        assertEquals(0, new BigDecimal("1.58805").compareTo(charge.get("subtotal").decimalValue()));
    }

    @Test
    @Order(2)
    void aRerunReusesTheDatasetAndWhenEveryStageFailsTheRequestFails() throws Exception {
        History history = new History();
        LocalRunner runner = runner(failing("sparse_structure", "geometry", "texture"), history);
        String id = runner.submit(request);
        Execution execution = runner.start(id);
        assertEquals(Execution.Status.FAILED, execution.await());
        assertFalse(history.entered.contains("Preprocess"), "the cached dataset should have been reused");
        assertEquals("AllStagesFailed", execution.error());
        assertEquals("every stage failed: sparse_structure: injected failure: sparse_structure diverged at step 1; "
                + "geometry: injected failure: geometry diverged at step 1; "
                + "texture: injected failure: texture diverged at step 1", execution.cause());
        JsonNode result = json(runner.publishResult(id));
        assertEquals(0, result.get("adapters").size());
        assertEquals(3, result.get("failed").size());
        // Nothing succeeded and the dataset was reused: nothing is charged.
        assertEquals(0, BigDecimal.ZERO.compareTo(json(out.resolve(Keys.charge(id))).get("subtotal").decimalValue()));
    }

    @Test
    @Order(3)
    void aFailedPreprocessingOrPreparationFailsTheRequestWithItsReason() throws Exception {
        // Another resolution is another dataset: preprocessing runs, and fails as the worker reports it.
        Path request1024 = out.getParent().resolve("request-1024.json");
        Files.writeString(request1024, Files.readString(request).replace("\"resolution\":512", "\"resolution\":1024"));
        assertTrue(Files.readString(request1024).contains("1024"));
        History history = new History();
        LocalRunner runner = runner(failing("preprocess"), history);
        long preprocessRunsBefore = preprocessRuns();
        Execution execution = runner.start(runner.submit(request1024));
        assertEquals(Execution.Status.FAILED, execution.await());
        assertEquals("PreprocessFailed", execution.error());
        assertEquals("preprocessing failed: injected failure: no usable 3D object in the archive", execution.cause());
        assertEquals(preprocessRunsBefore + 1, preprocessRuns(), "exit code 2 is not retried");
        assertFalse(history.entered.contains("Train"));

        // The archive breaks between submit and Prepare: Prepare's refusal becomes the request's error.
        Path copy = out.getParent().resolve("broken.zip");
        Files.copy(out.getParent().resolve("assets.zip"), copy);
        Path brokenRequest = out.getParent().resolve("request-broken.json");
        Files.writeString(brokenRequest, Files.readString(request).replace("assets.zip", "broken.zip"));
        String id = runner.submit(brokenRequest);
        Files.write(copy, new byte[] {1, 2, 3});
        Execution broken = runner.start(id);
        assertEquals(Execution.Status.FAILED, broken.await());
        assertEquals("PrepareFailed", broken.error());
        assertTrue(broken.cause().startsWith("preparation failed: ") && broken.cause().contains("zip"), broken.cause());
    }

    @Test
    @Order(4)
    void cancellingStopsEveryWorkerProcess() throws Exception {
        History history = new History();
        LocalRunner runner = runner(List.of(worker.toString()), history);
        String id = runner.submit(request);
        Execution execution = runner.start(id);
        // Wait for both training processes to be running, then stop the execution as StopExecution would.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (workers().size() < 3 && System.nanoTime() < deadline && execution.status() == Execution.Status.RUNNING) {
            Thread.sleep(200);
        }
        assertTrue(workers().size() >= 2, "the training processes should be running");
        execution.stop("Cancelled", "cancelled by the test");
        assertTrue(execution.await(60, TimeUnit.SECONDS));
        assertEquals(Execution.Status.ABORTED, execution.status());
        for (int i = 0; i < 100 && !workers().isEmpty(); i++) {
            Thread.sleep(100);
        }
        assertEquals(List.of(), workers().stream().map(p -> p.info().commandLine().orElse("?")).toList());
        assertNotNull(history.entered);
        assertFalse(Files.exists(out.resolve(StorageLayout.resultJson(id))), "a cancelled run has no result");
    }

    /** This JVM's descendant processes that are worker commands. */
    private static List<ProcessHandle> workers() {
        return ProcessHandle.current().descendants().filter(ProcessHandle::isAlive)
                .filter(p -> p.info().commandLine().orElse("").contains("trellis2_worker")).toList();
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (var s = Files.walk(p)) {
            for (Path q : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.delete(q);
            }
        }
    }
}

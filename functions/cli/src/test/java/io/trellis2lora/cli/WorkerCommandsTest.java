package io.trellis2lora.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.testing.TestPaths;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** generate and convert as a user runs them: the worker command they build, what they refuse, what they leave. */
class WorkerCommandsTest {
    @TempDir
    Path tmp;
    Path worker;
    Path calls;

    record Run(int code, String out, String err) {
    }

    /**
     * TEST STAND-IN, not the worker: records its arguments (one per line) in calls.txt; for generate it writes the
     * --output and --report files the real worker writes, then exits with $FAKE_EXIT (from a file, default 0).
     */
    @BeforeEach
    void fakeWorker() throws Exception {
        calls = tmp.resolve("calls.txt");
        worker = tmp.resolve("fake-worker.sh");
        Files.writeString(worker, """
                #!/bin/sh
                for a in "$@"; do printf '%%s\\n' "$a"; done > %1$s
                code=$(cat %1$s.exit 2>/dev/null || echo 0)
                if [ "$code" != 0 ]; then echo "trellis2-worker: image is not a picture" >&2; exit "$code"; fi
                echo "generating ..."
                prev=""
                for a in "$@"; do
                  case "$prev" in
                    --output) printf 'glTF-bytes' > "$a" ;;
                    --vxz) printf 'vxz' > "$a" ;;
                    --report) printf '{"seed": 7, "timings": {"total_s": 1.5}, "adapters": [{"stage": "texture"}], "device": "cpu"}' > "$a" ;;
                  esac
                  prev="$a"
                done
                """.formatted(calls));
        Files.setPosixFilePermissions(worker, PosixFilePermissions.fromString("rwxr-xr-x"));
    }

    Run run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8), List.of(worker.toString()));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    List<String> workerArgs() throws Exception {
        return Files.readAllLines(calls);
    }

    Path request(String json) throws Exception {
        Files.writeString(tmp.resolve("chair.png"), "png");
        Files.writeString(tmp.resolve("texture.safetensors"), "lora");
        Path r = tmp.resolve("generate.json");
        Files.writeString(r, json);
        return r;
    }

    @Test
    void generateHandsTheWorkerEverySettingAndWritesResultJson() throws Exception {
        Path r = request("""
                {"image_url": "chair.png", "texture_lora_url": "texture.safetensors", "texture_lora_scale": 0.5,
                 "geometry_lora_url": "s3://b/geometry.safetensors", "seed": 7, "resolution": 1024,
                 "pipeline_type": "1024_cascade", "texture_size": 1024, "decimation_target": 20000,
                 "export_vxz": true, "sampler": {"shape": {"steps": 12, "guidance_strength": 7.5}}}""");
        Path out = tmp.resolve("out");
        Run run = run("generate", r.toString(), "--out", out.toString(), "--base", "tiny");
        assertEquals(0, run.code(), run.err());
        assertTrue(run.out().contains("generating ..."), run.out());
        assertEquals(List.of("generate", "--image", tmp.resolve("chair.png").toString(),
                "--output", out.resolve("model.glb").toString(), "--report",
                out.resolve("generate_report.json").toString(), "--base", "tiny", "--seed", "7",
                "--resolution", "1024", "--pipeline-type", "1024_cascade",
                "--geometry-lora", "s3://b/geometry.safetensors", "--geometry-scale", "1.0",
                "--texture-lora", tmp.resolve("texture.safetensors").toString(), "--texture-scale", "0.5",
                "--texture-size", "1024", "--decimate", "20000", "--vxz", out.resolve("model.vxz").toString(),
                "--sampler", "shape.steps=12", "--sampler", "shape.guidance_strength=7.5"), workerArgs());

        JsonNode result = Json.MAPPER.readTree(out.resolve("result.json").toFile());
        assertEquals(out.resolve("model.glb").toString(), result.at("/model_glb/url").asText());
        assertEquals("model/gltf-binary", result.at("/model_glb/content_type").asText());
        assertEquals("model.glb", result.at("/model_glb/file_name").asText());
        assertEquals(10, result.at("/model_glb/file_size").asLong());
        assertEquals(3, result.at("/model_vxz/file_size").asLong());
        assertEquals(7, result.get("seed").asInt());
        assertEquals(1.5, result.at("/timings/total_s").asDouble());
        assertEquals("texture", result.at("/adapters/0/stage").asText());
        assertEquals("cpu", result.at("/report/device").asText());
    }

    @Test
    void defaultsAndTheBaseModelWhenNoneIsGiven() throws Exception {
        Path r = request("{\"image_url\": \"chair.png\", \"texture_lora_url\": \"texture.safetensors\"}");
        Run run = run("generate", r.toString(), "--out", tmp.resolve("o").toString());
        assertEquals(0, run.code(), run.err());
        List<String> args = workerArgs();
        assertEquals("microsoft/TRELLIS.2-4B", args.get(args.indexOf("--base") + 1));
        assertEquals(List.of("--seed", "0", "--resolution", "512"), args.subList(args.indexOf("--seed"),
                args.indexOf("--seed") + 4));
        assertEquals("2048", args.get(args.indexOf("--texture-size") + 1));
        assertEquals("500000", args.get(args.indexOf("--decimate") + 1));
        assertFalse(args.contains("--vxz") || args.contains("--pipeline-type") || args.contains("--sampler"));
        JsonNode result = Json.MAPPER.readTree(tmp.resolve("o/result.json").toFile());
        assertFalse(result.has("model_vxz"));
    }

    @Test
    void withoutALoraItIsRefusedUnlessAllowBaseOnly() throws Exception {
        Path r = request("{\"image_url\": \"chair.png\"}");
        Run refused = run("generate", r.toString(), "--out", tmp.resolve("o").toString());
        assertEquals(2, refused.code());
        assertEquals(1, refused.err().strip().split("\n").length, refused.err());
        assertTrue(refused.err().contains("hosted endpoint requires at least one")
                && refused.err().contains("--allow-base-only"), refused.err());
        assertFalse(Files.exists(calls), "the worker must not run");
        Run allowed = run("generate", r.toString(), "--out", tmp.resolve("o").toString(), "--allow-base-only");
        assertEquals(0, allowed.code(), allowed.err());
        assertTrue(workerArgs().contains("--allow-base-only"));
    }

    @Test
    void badRequestsAreRefusedWithOneLineEachAndNoTrace() throws Exception {
        Path unknown = request("{\"image_url\": \"chair.png\", \"texture_lora_url\": \"texture.safetensors\", "
                + "\"steps\": 3}");
        Run u = run("generate", unknown.toString(), "--out", tmp.resolve("o").toString());
        assertEquals(2, u.code());
        assertTrue(u.err().startsWith("unknown field 'steps'"), u.err());
        Path wrongType = request("{\"image_url\": \"chair.png\", \"texture_lora_url\": \"texture.safetensors\", "
                + "\"seed\": 1.5}");
        Run t = run("generate", wrongType.toString(), "--out", tmp.resolve("o").toString());
        assertEquals(2, t.code());
        assertEquals("seed has the wrong type: expected an integer", t.err().strip());
        Path ranges = request("{\"image_url\": \"missing.png\", \"texture_lora_url\": \"http://x/t.safetensors\", "
                + "\"texture_lora_scale\": 12.5, \"seed\": -1, \"resolution\": 768, \"pipeline_type\": \"2048\", "
                + "\"texture_size\": 3000, \"decimation_target\": -10, \"sampler\": {\"colour\": {}}}");
        Run g = run("generate", ranges.toString(), "--out", tmp.resolve("o").toString());
        assertEquals(2, g.code());
        List<String> lines = List.of(g.err().strip().split("\n"));
        assertEquals(9, lines.size(), g.err());
        for (String field : List.of("image_url", "texture_lora_url", "texture_lora_scale", "seed", "resolution",
                "pipeline_type", "texture_size", "decimation_target", "sampler.colour")) {
            assertTrue(lines.stream().anyMatch(l -> l.startsWith(field)), field + " in " + g.err());
        }
        assertFalse(g.err().contains("Exception") || g.err().contains("\tat "), g.err());
        assertFalse(Files.exists(calls), "the worker must not run");
    }

    /** The requests the worker's check_request judges too (batch-containers/worker/tests/generate_requests.json). */
    static List<JsonNode> sharedRequests() throws Exception {
        JsonNode table = Json.MAPPER.readTree(
                TestPaths.repo().resolve("batch-containers/worker/tests/generate_requests.json").toFile());
        List<JsonNode> out = new ArrayList<>();
        table.get("cases").forEach(c -> out.add(((ObjectNode) c.deepCopy()).set("base", table.get("base"))));
        return out;
    }

    @ParameterizedTest(name = "{index}: {0}")
    @MethodSource("sharedRequests")
    void sharedGenerateRequestIsJudgedAsTheWorkerJudgesIt(JsonNode c) throws Exception {
        ObjectNode body = ((ObjectNode) c.get("base").deepCopy()).setAll((ObjectNode) c.get("request"));
        Run run = run("generate", request(Json.write(body)).toString(), "--out", tmp.resolve("o").toString());
        String id = c.get("id").asText();
        if (!c.has("refused")) {
            assertEquals(0, run.code(), id + ": " + run.err());
            return;
        }
        assertEquals(2, run.code(), id);
        String line = run.err().strip();
        assertEquals(1, line.split("\n").length, id + ": " + line);
        assertTrue(line.startsWith(c.get("refused").asText()) && line.contains(c.get("mentions").asText()),
                id + ": " + line);
        assertFalse(Files.exists(calls), id + ": the worker must not run");
    }

    @Test
    void theWorkersInputErrorIsExit2WithItsOneLine() throws Exception {
        Path r = request("{\"image_url\": \"chair.png\", \"texture_lora_url\": \"texture.safetensors\"}");
        Files.writeString(Path.of(calls + ".exit"), "2");
        Run run = run("generate", r.toString(), "--out", tmp.resolve("o").toString());
        assertEquals(2, run.code());
        assertEquals("trellis2-worker: image is not a picture", run.err().strip());
        assertFalse(Files.exists(tmp.resolve("o/result.json")));
        Files.writeString(Path.of(calls + ".exit"), "1");
        assertEquals(1, run("generate", r.toString(), "--out", tmp.resolve("o").toString()).code());
    }

    @Test
    void convertPassesItsArgumentsAndExitCodeStraightThrough() throws Exception {
        Run ok = run("convert", "a.safetensors", "--to", "comfyui", "--output", "b.safetensors", "--scale", "0.8");
        assertEquals(0, ok.code(), ok.err());
        assertEquals(List.of("convert", "a.safetensors", "--to", "comfyui", "--output", "b.safetensors", "--scale",
                "0.8"), workerArgs());
        Files.writeString(Path.of(calls + ".exit"), "2");
        Run refused = run("convert", "a.safetensors", "--to", "onnx", "--output", "b");
        assertEquals(2, refused.code());
        assertEquals("trellis2-worker: image is not a picture", refused.err().strip());
    }
}

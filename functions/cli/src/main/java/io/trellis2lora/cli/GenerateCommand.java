package io.trellis2lora.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.model.FileRef;
import io.trellis2lora.local.Worker;
import io.trellis2lora.orchestration.Preparer;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * {@code generate REQUEST.json --out DIR}: one 3D model from an image with the request's LoRAs applied, made by the
 * worker's generate; DIR/result.json lists model.glb (and model.vxz) with the worker's timings and adapters.
 */
final class GenerateCommand implements Command {
    static final String MODEL = "model.glb";
    static final String VOXELS = "model.vxz";
    static final String REPORT = "generate_report.json";

    private final List<String> worker;

    GenerateCommand(List<String> worker) {
        this.worker = worker;
    }

    @Override
    public String name() {
        return "generate";
    }

    @Override
    public String usage() {
        return """
                REQUEST.json --out DIR [--base BASE] [--allow-base-only]
                  one 3D model from an image with the LoRAs applied (image_url, <stage>_lora_url and _scale, seed,
                  resolution, pipeline_type, texture_size, decimation_target, export_vxz, sampler);
                  DIR/result.json lists model.glb; --allow-base-only: no LoRA (the hosted endpoint requires one)""";
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        Args a = Args.parse(args, Set.of("--out", "--base"), Set.of("--allow-base-only"));
        Path requestFile = Path.of(a.only("REQUEST.json"));
        Path dir = Path.of(a.required("--out")).toAbsolutePath().normalize();
        boolean baseOnly = a.has("--allow-base-only");
        GenerateRequest request = GenerateRequest.parse(requestFile, baseOnly);
        Files.createDirectories(dir);
        String base = a.options.getOrDefault("--base", Preparer.DEFAULT_BASE_MODEL);
        int code = Worker.run(worker, workerArgs(request, dir, base, baseOnly), out, err);
        if (code == 2) {
            return 2; // the worker said why, in one line on stderr
        }
        if (code == 130 || code == 143) {
            return 130;
        }
        if (code != 0) {
            err.println("error: the worker's generate failed (exit code " + code + ")");
            return 1;
        }
        Path result = writeResult(request, dir);
        out.println("result: " + result);
        out.println("  model: " + dir.resolve(MODEL));
        return 0;
    }

    /** trellis2-worker generate with the request's settings (one --sampler per override). */
    static List<String> workerArgs(GenerateRequest r, Path dir, String base, boolean baseOnly) {
        List<String> cmd = new ArrayList<>(List.of("generate", "--image", r.imageUrl(),
                "--output", dir.resolve(MODEL).toString(), "--report", dir.resolve(REPORT).toString(),
                "--base", base, "--seed", String.valueOf(r.seed()), "--resolution", String.valueOf(r.resolution())));
        if (r.pipelineType() != null) {
            cmd.addAll(List.of("--pipeline-type", r.pipelineType()));
        }
        for (GenerateRequest.Lora lora : r.loras()) {
            cmd.addAll(List.of(lora.flag() + "-lora", lora.url(), lora.flag() + "-scale", String.valueOf(lora.scale())));
        }
        cmd.addAll(List.of("--texture-size", String.valueOf(r.textureSize()),
                "--decimate", String.valueOf(r.decimationTarget())));
        if (r.exportVxz()) {
            cmd.addAll(List.of("--vxz", dir.resolve(VOXELS).toString()));
        }
        if (baseOnly) {
            cmd.add("--allow-base-only");
        }
        for (String o : r.samplerOverrides()) {
            cmd.addAll(List.of("--sampler", o));
        }
        return cmd;
    }

    /** DIR/result.json: the files made, the seed, and the worker's timings and adapters, with its whole report. */
    static Path writeResult(GenerateRequest r, Path dir) throws IOException {
        JsonNode report = Files.isRegularFile(dir.resolve(REPORT))
                ? Json.MAPPER.readTree(dir.resolve(REPORT).toFile()) : Json.MAPPER.createObjectNode();
        ObjectNode result = Json.MAPPER.createObjectNode();
        result.set("model_glb", file(dir.resolve(MODEL), "model/gltf-binary"));
        if (r.exportVxz()) {
            result.set("model_vxz", file(dir.resolve(VOXELS), "application/octet-stream"));
        }
        result.set("seed", report.has("seed") ? report.get("seed") : Json.MAPPER.getNodeFactory().numberNode(r.seed()));
        result.set("timings", report.path("timings").isMissingNode() ? Json.MAPPER.createObjectNode()
                : report.get("timings"));
        result.set("adapters", report.path("adapters").isMissingNode() ? Json.MAPPER.createArrayNode()
                : report.get("adapters"));
        result.set("report", report);
        Path target = dir.resolve("result.json");
        Files.writeString(target, Json.pretty(result) + "\n");
        return target;
    }

    private static JsonNode file(Path p, String contentType) throws IOException {
        if (!Files.isRegularFile(p)) {
            throw new IOException("the worker's generate succeeded but left no " + p.getFileName());
        }
        return Json.MAPPER.valueToTree(new FileRef(p.toString(), contentType, p.getFileName().toString(),
                Files.size(p)));
    }
}

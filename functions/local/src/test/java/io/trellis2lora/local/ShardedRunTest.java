package io.trellis2lora.local;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.local.asl.Execution;
import io.trellis2lora.orchestration.Keys;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The real definition's sharded preprocessing walked by the local runner: Prepare's plan, the array job's children
 * as parallel processes with their AWS_BATCH_JOB_ARRAY_INDEX, the merge, then training on what survived. The worker
 * is a stand-in (below) that keeps the shard contract, so the test takes a second.
 */
class ShardedRunTest {
    @TempDir
    Path dir;

    /**
     * TEST STAND-IN, not the worker: preprocess writes a "dataset" holding one member per object of its block of the
     * plan (exit 2 with an {"error"} report for the shards listed in its first argument); merge joins the shards'
     * members, reports the objects of a shard without a dataset as failed, and exits 2 when none is left; train
     * writes an adapter and the record Finalize checks, and lists the dataset's members beside it.
     */
    private List<String> worker(String failingShards) throws Exception {
        Path script = dir.resolve("shard-worker.py");
        Files.writeString(script, """
                #!/usr/bin/env python3
                # TEST STAND-IN for bin/trellis2-worker (ShardedRunTest.worker)
                import json, os, sys, zipfile
                failing, cmd, args = sys.argv[1].split(","), sys.argv[2], sys.argv[3:]
                def opt(name):
                    return args[args.index(name) + 1]
                def write(path, text):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    open(path, "w").write(text)
                def block(plan, i, n):
                    objects = json.load(open(plan))["objects"]
                    return [o["file"] for o in objects[i * len(objects) // n:(i + 1) * len(objects) // n]]
                if cmd == "preprocess":
                    i, n = os.environ["AWS_BATCH_JOB_ARRAY_INDEX"], int(opt("--shard-count"))
                    out, report = opt("--output").replace("{shard}", i), opt("--report").replace("{shard}", i)
                    if i in failing:
                        write(report, json.dumps({"error": "injected failure in shard " + i}))
                        sys.exit(2)
                    files = block(opt("--objects-from"), int(i), n)
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    with zipfile.ZipFile(out, "w") as z:
                        for f in files:
                            z.writestr("objects/" + f, "latents of " + f)
                    write(report, json.dumps({"objects_succeeded": len(files), "objects_failed": 0}))
                elif cmd == "merge":
                    n, members, failed = int(opt("--shard-count")), {}, []
                    for i in range(n):
                        out = opt("--shard-outputs").replace("{shard}", str(i))
                        report = opt("--shard-reports").replace("{shard}", str(i))
                        if os.path.exists(out):
                            with zipfile.ZipFile(out) as z:
                                members.update({m: z.read(m) for m in z.namelist()})
                        else:
                            why = json.load(open(report)).get("error") if os.path.exists(report) else "no report"
                            failed += [{"file": f, "reason": why} for f in block(opt("--plan"), i, n)]
                    if not members:
                        write(opt("--report"), json.dumps({"error": "no object survived preprocessing in any shard "
                                                                     "(" + failed[0]["reason"] + ")"}))
                        sys.exit(2)
                    os.makedirs(os.path.dirname(opt("--output")), exist_ok=True)
                    with zipfile.ZipFile(opt("--output"), "w") as z:
                        for m in sorted(members):
                            z.writestr(m, members[m])
                    write(opt("--report"), json.dumps({"objects_succeeded": len(members),
                                                       "objects_failed": len(failed), "failed": failed}))
                elif cmd == "train":
                    with zipfile.ZipFile(opt("--dataset")) as z:
                        trained = sorted(z.namelist())
                    out = opt("--output")
                    write(out, "adapter")
                    write(out + ".objects", json.dumps(trained))
                    d = opt("--denoiser")
                    write(opt("--report"), json.dumps({"denoiser": d, "resolution": int(opt("--resolution")),
                        "rank": int(opt("--rank")), "training_steps": int(opt("--training-steps")),
                        "learning_rate": float(opt("--learning-rate")),
                        "lora_file": {"url": out, "content_type": "application/octet-stream",
                                      "file_name": d + ".safetensors", "file_size": 7}, "metrics": {}}))
                else:
                    sys.exit("unexpected command " + cmd)
                """);
        Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwxr-xr-x"));
        return List.of(script.toString(), failingShards);
    }

    /** Seven objects (STL text), request for one stage. */
    private Path request() throws Exception {
        Path zip = dir.resolve("seven.zip");
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
            for (int i = 1; i <= 7; i++) {
                z.putNextEntry(new ZipEntry("o" + i + ".stl"));
                z.write(("solid o" + i + "\nendsolid o" + i + "\n").getBytes());
                z.closeEntry();
            }
        }
        Path request = dir.resolve("request.json");
        Files.writeString(request, Json.write(Map.of("data_url", "seven.zip", "denoisers", List.of("geometry"),
                "resolution", 512, "rank", 16, "learning_rate", 0.0001, "training_steps", 100)));
        return request;
    }

    private record Run(LocalRunner runner, String id, Execution execution, Execution.Status status,
                       LocalRunTest.History history) {
        JsonNode report() throws Exception {
            return Json.MAPPER.readTree(runner.out().resolve(Keys.preprocessReport(id)).toFile());
        }
    }

    private Run run(String failingShards) throws Exception {
        LocalRunTest.History history = new LocalRunTest.History();
        LocalRunner runner = new LocalRunner(dir.resolve("out"), "tiny", worker(failingShards), history)
                .preprocessShards(3);
        String id = runner.submit(request());
        Execution e = runner.start(id);
        assertTrue(e.await(60, TimeUnit.SECONDS), "the run ends");
        return new Run(runner, id, e, e.status(), history);
    }

    @Test
    void aShardThatFailsFailsOnlyItsObjectsAndTheOthersTrain() throws Exception {
        Run r = run("1");
        assertEquals(Execution.Status.SUCCEEDED, r.status(), r.history().lines.toString());
        assertEquals(1, r.history().count("PreprocessShards"));
        assertEquals(1, r.history().count("MergeShards"));
        assertEquals(0, r.history().count("Preprocess"), "not the single preprocess job");
        // shard 1 of 7 objects in 3 is o3, o4: reported failed with the shard's reason; the others trained
        JsonNode report = r.report();
        assertEquals(5, report.get("objects_succeeded").asInt());
        assertEquals(2, report.get("objects_failed").asInt());
        List<String> failed = new ArrayList<>();
        report.get("failed").forEach(f -> failed.add(f.get("file").asText() + ": " + f.get("reason").asText()));
        assertEquals(List.of("o3.stl: injected failure in shard 1", "o4.stl: injected failure in shard 1"), failed);
        Path adapter = r.runner().out().resolve(StorageLayout.adapter(r.id(), Denoiser.GEOMETRY));
        assertEquals(List.of("objects/o1.stl", "objects/o2.stl", "objects/o5.stl", "objects/o6.stl", "objects/o7.stl"),
                Json.MAPPER.convertValue(Json.MAPPER.readTree(Path.of(adapter + ".objects").toFile()), List.class));
        JsonNode result = LocalRunner.readJson(r.runner().out().resolve(StorageLayout.resultJson(r.id())));
        assertEquals(1, result.get("adapters").size());
        try (ZipFile dataset = new ZipFile(result.at("/preprocessed_data_file/url").asText())) {
            assertEquals(5, dataset.size());
        }
    }

    @Test
    void whenEveryShardFailsTheRunFailsSayingNoObjectSurvived() throws Exception {
        Run r = run("0,1,2");
        assertEquals(Execution.Status.FAILED, r.status());
        assertEquals("PreprocessFailed", r.execution().error());
        assertTrue(r.execution().cause().contains("no object survived preprocessing in any shard"),
                r.execution().cause());
        assertEquals(0, r.history().count("TrainStage"));
        JsonNode result = LocalRunner.readJson(r.runner().out().resolve(StorageLayout.resultJson(r.id())));
        assertEquals(0, result.get("adapters").size());
        assertTrue(result.at("/failed/0/error").asText().startsWith("preprocessing failed: no object survived"),
                result.toString());
        assertFalse(Files.exists(r.runner().out().resolve("datasets")) && hasZip(r.runner().out().resolve("datasets")));
    }

    private static boolean hasZip(Path d) throws Exception {
        try (var files = Files.walk(d)) {
            return files.anyMatch(p -> p.toString().endsWith(".zip"));
        }
    }
}

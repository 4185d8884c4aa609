package io.trellis2lora.local;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.Json;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.TestPaths;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Rerunning the same request file into the same storage directory goes on as the same request (no worker runs). */
class ResumeTest {
    @TempDir
    Path dir;

    private Path requestFile(int steps) throws Exception {
        Path zip = dir.resolve("assets.zip");
        if (!Files.exists(zip)) {
            try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
                z.putNextEntry(new ZipEntry("float-color.ply"));
                z.write(Files.readAllBytes(TestPaths.realAssets().resolve("assimp/PLY/float-color.ply")));
                z.closeEntry();
            }
        }
        Path request = dir.resolve("request.json");
        Files.writeString(request, Json.write(Map.of("data_url", "assets.zip", "denoisers", List.of("geometry"),
                "resolution", 512, "rank", 16, "learning_rate", 0.0001, "training_steps", steps)));
        return request;
    }

    @Test
    void theSameRequestFileGoesOnAsTheSameRequestUnlessFresh() throws Exception {
        LocalRunner runner = new LocalRunner(dir.resolve("out"), "tiny", List.of("true"), new Progress(System.out, false));
        Path request = requestFile(100);
        LocalRunner.Submission first = runner.submit(request, false);
        assertFalse(first.resumed());
        // what an interrupted training job leaves beside its adapter
        Path checkpoint = runner.out().resolve(StorageLayout.requestPrefix(first.requestId())
                + "adapters/geometry" + LocalRunner.CHECKPOINT_SUFFIX);
        Files.createDirectories(checkpoint.getParent());
        Files.write(checkpoint, new byte[] {1, 2, 3});

        LocalRunner.Submission again = runner.submit(request, false);
        assertEquals(new LocalRunner.Submission(first.requestId(), true), again);
        assertTrue(Files.exists(checkpoint), "kept for the training job to resume from");

        LocalRunner.Submission edited = runner.submit(requestFile(200), false);
        assertNotEquals(first.requestId(), edited.requestId(), "another request (its bytes changed)");
        assertFalse(edited.resumed());

        requestFile(100);
        LocalRunner.Submission fresh = runner.submit(request, true);
        assertFalse(fresh.resumed());
        assertNotEquals(first.requestId(), fresh.requestId());
        assertFalse(Files.exists(checkpoint), "the abandoned request's checkpoint is removed");
        assertEquals(new LocalRunner.Submission(fresh.requestId(), true), runner.submit(request, false));
    }

    @Test
    void aRunThatEndedLeavesNoCheckpointBehind() throws Exception {
        LocalRunner runner = new LocalRunner(dir.resolve("out"), "tiny", List.of("true"), new Progress(System.out, false));
        String id = runner.submit(requestFile(100), false).requestId();
        Path adapters = runner.out().resolve(StorageLayout.requestPrefix(id) + "adapters");
        Files.createDirectories(adapters);
        Files.write(adapters.resolve("texture" + LocalRunner.CHECKPOINT_SUFFIX), new byte[] {1});
        Files.write(adapters.resolve("geometry.safetensors"), new byte[] {2});
        runner.removeCheckpoints(id);
        try (var files = Files.list(adapters)) {
            assertEquals(List.of("geometry.safetensors"), files.map(p -> p.getFileName().toString()).toList());
        }
    }
}

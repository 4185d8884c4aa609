package io.trellis2lora.local;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.Json;
import io.trellis2lora.local.asl.AslError;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class ProgressTest {
    private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    private final Progress progress = new Progress(new PrintStream(bytes, true, StandardCharsets.UTF_8), false);

    private String printed() {
        return bytes.toString(StandardCharsets.UTF_8);
    }

    @Test
    void aCaughtFailureSaysWhyAndIsNotFollowedByADoneLine() {
        progress.stateEntered("", "Preprocess");
        String job = "{\"Status\":\"FAILED\",\"Container\":{\"ExitCode\":2,\"LogTail\":"
                + "\"preprocess: 3 object(s) found\\nerror: no object could be preprocessed (3 found)\"}}";
        progress.caught("", "Preprocess", new AslError("States.TaskFailed", job), "Finalize");
        progress.stateSucceeded("", "Preprocess");
        String out = printed();
        assertTrue(out.contains("Preprocess FAILED after 0 s (States.TaskFailed: error: no object could be "
                + "preprocessed (3 found)), continuing with Finalize"), out);
        assertFalse(out.contains("done in"), out);
    }

    @Test
    void theEndOfARunShowsEachAdaptersMetricsBaseToAdapted() throws Exception {
        progress.summary(Json.MAPPER.readTree("""
                {"adapters": [{"denoiser": "geometry", "metrics": {
                   "train_loss_first": 1.5, "train_loss_last": 0.75,
                   "train_objects_flow_loss": {"base": 1.0, "adapted": 0.5, "objects": 3},
                   "held_out": {"flow_loss": {"base": 2.0, "adapted": 1.8, "objects": 1},
                                "generation": {"objects": 1, "mean": {"base": {"chamfer_l1": 0.2},
                                                                    "adapted": {"chamfer_l1": 0.1}}}}}}],
                 "failed": [{"denoiser": "texture", "error": "out of memory"}]}"""));
        String[] lines = printed().lines().map(l -> l.substring(8)).toArray(String[]::new);
        assertEquals("geometry: training loss 1.5000 -> 0.7500", lines[0]);
        assertEquals("  geometry fixed-noise flow loss on the training objects (3), base -> adapted: "
                + "1.0000 -> 0.5000 (-50.0%)", lines[1]);
        assertEquals("  geometry fixed-noise flow loss on the held-out objects (1), base -> adapted: "
                + "2.0000 -> 1.8000 (-10.0%)", lines[2]);
        assertEquals("  geometry held-out generations chamfer_l1, base -> adapted: 0.2000 -> 0.1000", lines[3]);
        assertEquals("texture: FAILED: out of memory", lines[4]);
    }

    @Test
    void aNewBarsFirstRedrawAndEveryBarsLastAreShownEvenWithinFiveSeconds() {
        progress.output("", "Preprocess", "writing the tiny base v3 (once):  50%|#    | 6/12 [00:03<00:03, 2model/s]");
        progress.output("", "Preprocess", "writing the tiny base v3 (once):  92%|#### | 11/12 [00:05<00:00, 2model/s]");
        progress.output("", "Preprocess", "writing the tiny base v3 (once): 100%|#####| 12/12 [00:06<00:00, 2model/s]");
        progress.output("", "Preprocess", "encode (O-Voxel 512, cpu):   0%|     | 0/3 [00:00<?, ?object/s]");
        progress.output("", "Preprocess", "encode (O-Voxel 512, cpu):  33%|#    | 1/3 [00:01<00:02, 1s/object]");
        String out = printed();
        assertTrue(out.contains("6/12") && out.contains("12/12") && out.contains("0/3"), out);
        assertFalse(out.contains("11/12") || out.contains("1/3 "), out);
    }
}

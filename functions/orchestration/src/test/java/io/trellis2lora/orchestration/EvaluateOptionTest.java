package io.trellis2lora.orchestration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Assessment;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.storage.DirectoryObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.TestZips;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.TempFileStager;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The request's "evaluate": false reaches every training job as the worker's --eval-objects 0; true or absent, none. */
class EvaluateOptionTest {
    @TempDir
    Path tmp;

    private Plan prepare(String extra, String id, boolean dropEvaluate) throws Exception {
        Path zip = TestZips.write(tmp.resolve(id + ".zip"), TestZips.preprocessed(512, 3));
        var request = new RequestValidator(RequestValidator.Mode.LOCAL).parse("{\"data_url\": \""
                + zip.toString().replace("\\", "\\\\") + "\", \"denoisers\": [\"geometry\", \"texture\"]" + extra + "}");
        ArchiveOpener opener = new ArchiveOpener(null, null);
        Assessment a = Assessment.of(request, opener, new TempFileStager());
        ObjectNode stored = Json.MAPPER.valueToTree(new StoredRequest(id, "t", null, a.request(), a.inputUri(),
                a.inspection(), a.estimate()));
        if (dropEvaluate) {  // a request.json stored before the field existed
            ((ObjectNode) stored.get("request")).remove("evaluate");
        }
        DirectoryObjectStore store = new DirectoryObjectStore(tmp.resolve("store"));
        store.write(StorageLayout.requestJson(id), Json.pretty(stored).getBytes(StandardCharsets.UTF_8),
                "application/json");
        return new Preparer(store, opener, "tiny", List.of()).prepare(
                Json.MAPPER.readTree("{\"request_id\": \"" + id + "\"}"));
    }

    @Test
    void evaluateFalseTurnsEveryTrainingJobsEvaluationOff() throws Exception {
        Plan plan = prepare(", \"evaluate\": false", "req-eval-off", false);
        assertEquals(2, plan.stages().size());
        for (Plan.Stage stage : plan.stages()) {
            List<String> command = stage.command();
            int at = command.indexOf("--eval-objects");
            assertTrue(at > 0, command.toString());
            assertEquals("0", command.get(at + 1));
        }
    }

    @Test
    void evaluateTrueOrAbsentLeavesTheWorkersDefault() throws Exception {
        for (Plan plan : List.of(prepare(", \"evaluate\": true", "req-eval-on", false),
                prepare("", "req-eval-default", false), prepare("", "req-eval-old", true))) {
            for (Plan.Stage stage : plan.stages()) {
                assertFalse(stage.command().contains("--eval-objects"), stage.command().toString());
            }
        }
    }
}

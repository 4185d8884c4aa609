package io.trellis2lora.core.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import org.junit.jupiter.api.Test;

class TrainingResultTest {
    static final String RESULT = "{\"adapters\":[{\"denoiser\":\"geometry\",\"resolution\":1024,"
            + "\"lora_file\":{\"url\":\"s3://b/requests/r/adapters/geometry.safetensors\",\"content_type\":"
            + "\"application/octet-stream\",\"file_name\":\"geometry.safetensors\",\"file_size\":1234},"
            + "\"rank\":16,\"training_steps\":500,\"learning_rate\":0.0002}],"
            + "\"failed\":[{\"denoiser\":\"texture\",\"error\":\"CUDA out of memory\"}],"
            + "\"preprocessed_data_file\":{\"url\":\"s3://b/datasets/k/preprocessed.zip\",\"content_type\":"
            + "\"application/zip\",\"file_name\":\"preprocessed.zip\",\"file_size\":99}}";

    @Test
    void resultRoundTripsWithTheContractNames() throws Exception {
        TrainingResult r = TrainingResult.parse(RESULT);
        assertEquals(Denoiser.GEOMETRY, r.adapters().get(0).denoiser());
        assertEquals(1234L, r.adapters().get(0).loraFile().fileSize());
        assertEquals(Denoiser.TEXTURE, r.failed().get(0).denoiser());
        JsonNode again = Json.MAPPER.readTree(Json.write(r));
        assertEquals(Json.MAPPER.readTree(RESULT), again);
    }

    @Test
    void absentListsAreEmptyAndTheDatasetOptional() {
        TrainingResult r = TrainingResult.parse("{}");
        assertEquals(0, r.adapters().size());
        assertEquals(0, r.failed().size());
        assertNull(r.preprocessedDataFile());
    }

    @Test
    void unknownFieldsAreRefusedByName() {
        var e = assertThrows(InputRefusedException.class, () -> TrainingResult.parse(
                RESULT.replace("\"file_size\":99", "\"file_size\":99,\"checksum\":\"x\"")));
        assertTrue(e.getMessage().contains("'checksum'"), e.getMessage());
        var d = assertThrows(InputRefusedException.class, () -> TrainingResult.parse(
                RESULT.replace("\"denoiser\":\"texture\"", "\"denoiser\":\"colour\"")));
        assertTrue(d.getMessage().contains("not valid"), d.getMessage());
    }

    @Test
    void theWorkersExtraFieldsRoundTripAndItsExtraFilesArePresignedToo() throws Exception {
        String withExtras = RESULT.replace("\"learning_rate\":0.0002}", "\"learning_rate\":0.0002,"
                + "\"metrics\":{\"heldout_flow_loss_adapted\":0.4},\"preview_file\":{\"url\":\"s3://b/p.png\","
                + "\"content_type\":\"image/png\",\"file_name\":\"p.png\",\"file_size\":7}}");
        TrainingResult r = TrainingResult.parse(withExtras);
        assertEquals(Json.MAPPER.readTree(withExtras), Json.MAPPER.readTree(Json.write(r)));
        JsonNode presigned = Json.MAPPER.valueToTree(r.mapFiles(f -> f.withUrl("https://x/" + f.fileName())));
        assertEquals("https://x/p.png", presigned.at("/adapters/0/preview_file/url").asText());
        assertEquals("image/png", presigned.at("/adapters/0/preview_file/content_type").asText());
        assertEquals(0.4, presigned.at("/adapters/0/metrics/heldout_flow_loss_adapted").asDouble());
    }

    @Test
    void filesCanBeRewrittenForPresigning() {
        TrainingResult r = TrainingResult.parse(RESULT).mapFiles(f -> f.withUrl("https://x/" + f.fileName()));
        assertEquals("https://x/geometry.safetensors", r.adapters().get(0).loraFile().url());
        assertEquals("https://x/preprocessed.zip", r.preprocessedDataFile().url());
        assertEquals("application/zip", r.preprocessedDataFile().contentType());
    }
}

package io.trellis2lora.core.zip;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.testing.TestPaths;
import io.trellis2lora.core.testing.TestZips;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Named;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** A handed-back dataset's prepared_dataset.json against the worker's bounds (the shared dataset_bounds_cases.json). */
class PreparedDatasetBoundsTest {
    @TempDir
    Path tmp;

    static JsonNode table() throws IOException {
        return Json.MAPPER.readTree(Files.readAllBytes(
                TestPaths.repo().resolve("batch-containers/worker/tests/dataset_bounds_cases.json")));
    }

    static Stream<Named<JsonNode>> cases() throws IOException {
        List<Named<JsonNode>> out = new ArrayList<>();
        table().get("cases").forEach(c -> out.add(Named.of(c.get("id").asText(), c)));
        return out.stream();
    }

    @Test
    void theBoundsAreTheTablesWhichTheWorkerTestHoldsToItsOwn() throws IOException {
        JsonNode b = table().get("bounds");
        assertEquals(b.get("max_objects").asInt(), PreparedDatasetBounds.MAX_OBJECTS);
        assertEquals(b.get("max_renders").asInt(), PreparedDatasetBounds.MAX_RENDERS);
        assertEquals(b.get("max_tokens").get("512").asInt(), PreparedDatasetBounds.MAX_TOKENS.get(512));
        assertEquals(b.get("max_tokens").get("1024").asInt(), PreparedDatasetBounds.MAX_TOKENS.get(1024));
        assertEquals(b.get("max_info_bytes").asInt(), ArchiveRules.PREPARED_DATASET_MAX_BYTES);
    }

    @ParameterizedTest
    @MethodSource("cases")
    void preparedDatasetJsonIsHeldToTheBounds(JsonNode c) throws IOException {
        ObjectNode info = (ObjectNode) Json.MAPPER.readTree(TestZips.preprocessedJson(512, 0));
        ArrayNode objects = info.putArray("objects");
        for (int i = 0; i < c.get("object_count").asInt(); i++) {
            objects.addObject().put("sha256", String.format(Locale.ROOT, "%064x", i)).put("shape_tokens", 100)
                    .put("pbr_tokens", 100).put("renders", 16);
        }
        if (c.has("info")) {
            info.setAll((ObjectNode) c.get("info"));
        }
        if (c.has("object")) {
            ((ObjectNode) objects.get(0)).setAll((ObjectNode) c.get("object"));
        }
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ZipOutputStream zip = new ZipOutputStream(bytes)) {
            TestZips.put(zip, "prepared_dataset.json", Json.MAPPER.writeValueAsBytes(info));
        }
        Path file = TestZips.write(tmp.resolve("ds.zip"), bytes.toByteArray());
        if (c.has("refused")) {
            InputRefusedException e = assertThrows(InputRefusedException.class, () -> inspect(file));
            assertTrue(e.getMessage().contains(c.get("refused").asText()), e.getMessage());
        } else {
            assertEquals(c.get("object_count").asInt(), inspect(file).objects());
        }
    }

    private static ZipInspection inspect(Path zip) throws IOException {
        try (var src = new FileRangeSource(zip)) {
            return ZipInspector.inspect(src, null);
        }
    }
}

package io.trellis2lora.core.zip;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.testing.HostileZips;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Named;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The table of hostile archives the worker's extraction runs too (batch-containers/worker/tests/
 * hostile_archives.json): the inspection must read the same entries from the same bytes and give the same answer.
 */
class HostileArchivesTest {
    @TempDir
    Path tmp;

    static Stream<Named<JsonNode>> cases() throws IOException {
        return HostileZips.cases().stream().map(c -> Named.of(c.get("id").asText(), c));
    }

    @ParameterizedTest
    @MethodSource("cases")
    void sameAnswerAsTheWorker(JsonNode c) throws IOException, NoSuchAlgorithmException {
        Assumptions.assumeTrue(!c.path("slow").asBoolean(false) || System.getenv("TRELLIS2_SLOW_TESTS") != null,
                "a large archive: TRELLIS2_SLOW_TESTS=1 runs it");
        byte[] zip = HostileZips.build(c);
        assertEquals(c.get("sha256").asText(), HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                .digest(zip)), "the recipe's archive differs from the one the worker's tests build");
        Path file = Files.write(tmp.resolve("case.zip"), zip);
        JsonNode expect = c.get("expect");
        if (expect.has("refused")) {
            InputRefusedException e = assertThrows(InputRefusedException.class, () -> inspect(file));
            assertTrue(e.getMessage().contains(expect.get("refused").asText()), e.getMessage());
            return;
        }
        ZipInspector.Inspected got = inspect(file);
        List<String> objects = new ArrayList<>();
        expect.get("objects").forEach(o -> objects.add(o.asText()));
        assertEquals(objects, got.objectPaths());
        assertEquals(objects.size(), got.inspection().objects());
        assertEquals(expect.get("entries").asInt(), got.inspection().entries());
        assertEquals(expect.get("declared_bytes").asLong(), got.inspection().uncompressedBytes());
    }

    private static ZipInspector.Inspected inspect(Path zip) throws IOException {
        try (var src = new FileRangeSource(zip)) {
            return ZipInspector.inspectListing(src, null);
        }
    }
}

package io.trellis2lora.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A request file is one JSON document: anything after it is refused (exit 2) with one line saying where. */
class TrailingJsonTest {
    @TempDir
    Path tmp;

    private String refused(String command, String text) throws Exception {
        Path file = tmp.resolve(command + ".json");
        Files.writeString(file, text);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        String[] args = command.equals("generate") ? new String[] {command, file.toString(), "--out",
                tmp.resolve("out").toString()} : new String[] {command, file.toString()};
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8), List.of("/nonexistent/trellis2-worker"));
        String e = err.toString(StandardCharsets.UTF_8).strip();
        assertEquals(2, code, e);
        assertFalse(e.contains("\n") || e.contains("com.fasterxml") || e.contains("io.trellis2lora"), e);
        return e;
    }

    @Test
    void estimateAndGenerateRefuseASecondDocument() throws Exception {
        String e = refused("estimate", "{\"data_url\": \"a.zip\"}\n{\"data_url\": \"b.zip\"}");
        assertTrue(e.contains("more follows the JSON value") && e.contains("line 2, column 1"), e);
        String g = refused("generate", "{\"image_url\": \"a.png\"} []");
        assertTrue(g.contains("more follows the JSON value") && g.contains("line 1"), g);
        String junk = refused("estimate", "{\"data_url\": \"a.zip\"}garbage");
        assertTrue(junk.contains("not valid JSON"), junk);
    }
}

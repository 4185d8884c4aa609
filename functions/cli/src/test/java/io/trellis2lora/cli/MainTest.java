package io.trellis2lora.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.testing.TestZips;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The command line as a user runs it (bin/trellis2-lora calls this main). */
class MainTest {
    @TempDir
    Path tmp;

    record Run(int code, String out, String err) {
    }

    Run run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8), List.of("/nonexistent/trellis2-worker"));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void estimateFor20RealObjectsAllStages2000StepsRank32At512Is3193() throws Exception {
        TestZips.realAssetsZip(tmp.resolve("assets.zip"), 20);
        Files.writeString(tmp.resolve("request.json"), "{\"data_url\": \"assets.zip\", \"denoisers\": "
                + "[\"sparse_structure\", \"geometry\", \"texture\"], \"training_steps\": 2000, \"rank\": 32, "
                + "\"resolution\": 512}");
        Run r = run("estimate", tmp.resolve("request.json").toString());
        assertEquals(0, r.code(), r.err());
        JsonNode out = Json.MAPPER.readTree(r.out());
        JsonNode est = out.get("estimate");
        assertEquals("31.93", est.get("total").asText());
        assertEquals("2.0046", est.at("/preparation/amount").asText());
        assertEquals(20, est.at("/preparation/objects").asInt());
        assertEquals(List.of("16.674", "6.492", "6.756"), List.of(est.at("/stages/0/amount").asText(),
                est.at("/stages/1/amount").asText(), est.at("/stages/2/amount").asText()));
        assertEquals(20, out.at("/inspection/objects").asInt());
        assertEquals("raw", out.at("/inspection/kind").asText());
        assertEquals(tmp.resolve("assets.zip").toString(), out.at("/request/data_url").asText());
    }

    /** A copy of one object and a file manifest.csv leaves out are shown as skipped beside the billed count. */
    @Test
    void estimateShowsTheObjectFilesSkippedBesideTheBilledOnes() throws Exception {
        Path zip = TestZips.write(tmp.resolve("dups.zip"), TestZips.forge(List.of(
                TestZips.Forged.file("manifest.csv", "file,caption\na/lamp.ply,lamp\nb/lamp-copy.ply,lamp\n"
                        + "c/chair.glb,chair\n"),
                TestZips.Forged.file("a/lamp.ply", "ply lamp"), TestZips.Forged.file("b/lamp-copy.ply", "ply lamp"),
                TestZips.Forged.file("c/chair.glb", "glTF chair"), TestZips.Forged.file("d/extra.obj", "v 1 2 3")),
                false));
        Files.writeString(tmp.resolve("req.json"), "{\"data_url\": \"" + zip + "\", \"denoisers\": [\"texture\"]}");
        Run r = run("estimate", tmp.resolve("req.json").toString());
        assertEquals(0, r.code(), r.err());
        JsonNode prep = Json.MAPPER.readTree(r.out()).at("/estimate/preparation");
        assertEquals(2, prep.get("objects").asInt(), prep.toString());
        assertEquals(10, prep.get("billed_objects").asInt());
        assertEquals(2, prep.get("skipped_objects").asInt(), "the copy and the file outside the manifest");
        assertEquals(2, Json.MAPPER.readTree(r.out()).at("/inspection/skipped_objects").asInt());
    }

    @Test
    void inspectPrintsTheInspection() throws Exception {
        Path zip = TestZips.realAssetsZip(tmp.resolve("a.zip"), 7);
        Run r = run("inspect", zip.toString());
        assertEquals(0, r.code(), r.err());
        assertEquals(7, Json.MAPPER.readTree(r.out()).get("objects").asInt());
    }

    @Test
    void archiveHoldingEvilGlbIsRefusedNamingTheEntry() throws Exception {
        Path zip = TestZips.write(tmp.resolve("evil.zip"), TestZips.forge(List.of(
                TestZips.Forged.file("chair.glb", "x"), TestZips.Forged.file("../evil.glb", "x")), false));
        Run r = run("inspect", zip.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("../evil.glb"), r.err());
        assertEquals("", r.out());
        Files.writeString(tmp.resolve("req.json"), "{\"data_url\": \"" + zip + "\"}");
        Run e = run("estimate", tmp.resolve("req.json").toString());
        assertEquals(2, e.code());
        assertTrue(e.err().contains("'../evil.glb'"), e.err());
    }

    @Test
    void invalidRequestsExitWith2AndEveryReasonOnItsOwnLine() throws Exception {
        Files.writeString(tmp.resolve("bad.json"), "{\"rank\": 7, \"training_steps\": 5, \"colour\": 1}");
        Run r = run("estimate", tmp.resolve("bad.json").toString());
        assertEquals(2, r.code());
        assertEquals(4, r.err().strip().split("\n").length, r.err());
        assertEquals(2, run("estimate", tmp.resolve("missing.json").toString()).code());
        assertEquals(2, run("frobnicate").code());
        assertEquals(2, run().code());
    }

    @Test
    void helpListsEveryCommandAndExits0() {
        Run r = run("--help");
        assertEquals(0, r.code(), r.err());
        for (String line : List.of("inspect ARCHIVE", "estimate REQUEST.json", "train REQUEST.json --out DIR",
                "generate REQUEST.json --out DIR", "convert ADAPTER --to peft|comfyui|merged --output OUT")) {
            assertTrue(r.out().contains("  " + line), line + " missing from:\n" + r.out());
        }
        Run none = run();
        assertEquals(2, none.code());
        assertEquals(r.out(), none.err());
        Run one = run("train", "--help");
        assertEquals(0, one.code());
        assertTrue(one.out().startsWith("usage: trellis2-lora train REQUEST.json --out DIR"), one.out());
    }

    @Test
    void aMissingOptionNamesItAndShowsTheCommandsUsage() throws Exception {
        Files.writeString(tmp.resolve("r.json"), "{}");
        Run r = run("train", tmp.resolve("r.json").toString());
        assertEquals(2, r.code());
        assertTrue(r.err().startsWith("--out is required\nusage: trellis2-lora train "), r.err());
        Run shards = run("train", tmp.resolve("r.json").toString(), "--out", tmp.resolve("o").toString(),
                "--preprocess-shards", "0");
        assertEquals(2, shards.code());
        assertTrue(shards.err().startsWith("--preprocess-shards takes a whole number from 1 to 10000, got '0'"),
                shards.err());
    }
}

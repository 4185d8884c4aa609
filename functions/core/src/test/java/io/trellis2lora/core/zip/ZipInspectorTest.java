package io.trellis2lora.core.zip;

import static io.trellis2lora.core.testing.TestZips.Forged.claiming;
import static io.trellis2lora.core.testing.TestZips.Forged.file;
import static io.trellis2lora.core.testing.TestZips.Forged.symlink;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.testing.TestZips;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.zip.ZipFile;
import org.apache.commons.compress.archivers.zip.Zip64Mode;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipArchiveOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ZipInspectorTest {
    @TempDir
    Path tmp;

    ZipInspection inspect(Path zip, Integer resolution) throws IOException {
        try (var src = new FileRangeSource(zip)) {
            return ZipInspector.inspect(src, resolution);
        }
    }

    String refusal(byte[] zip) throws IOException {
        return refusal(TestZips.write(tmp.resolve("x.zip"), zip), null);
    }

    String refusal(Path zip, Integer resolution) {
        return String.join("\n", assertThrows(InputRefusedException.class, () -> inspect(zip, resolution)).problems());
    }

    @Test
    void realAssetsAreCountedFromTheCentralDirectoryAlone() throws IOException {
        Path zip = TestZips.realAssetsZip(tmp.resolve("real.zip"), 20);
        long uncompressed;
        int entries;
        try (ZipFile z = new ZipFile(zip.toFile())) {
            uncompressed = z.stream().mapToLong(java.util.zip.ZipEntry::getSize).sum();
            entries = z.size();
        }
        try (var src = new FileRangeSource(zip)) {
            ZipInspection i = ZipInspector.inspect(src, 512);
            assertEquals(ZipInspection.Kind.RAW, i.kind());
            assertEquals(20, i.objects());
            assertEquals(entries, i.entries());
            assertEquals(uncompressed, i.uncompressedBytes());
            assertEquals(Files.size(zip), i.archiveBytes());
            // The tail and the central directory: a couple of reads, not the archive.
            assertTrue(src.readCount() <= 3, "reads: " + src.readCount());
        }
        // Among them glTF2/BoxTextured-glTF/ and glTF2/MissingBin/ hold the same BoxTextured.gltf, but only the first
        // has its .bin beside it: two objects to the worker, and two here (a copy in another folder is not merged).
        assertEquals(30, inspect(TestZips.realAssetsZip(tmp.resolve("all.zip"), 30), null).objects());
    }

    @Test
    void extensionsAreCaseInsensitiveAndHiddenFilesAndMacosxAreIgnored() throws IOException {
        byte[] zip = TestZips.forge(List.of(file("a/b/c/Chair.GLB", "chair"), file("Table.Obj", "table"),
                file("lamp.fbx", "lamp"), file("scene.gltf", "{}"), file("scene.bin", "x"), file("x.stl", "x"),
                file("y.PLY", "y"), file("z.blend", "z"), file(".hidden.glb", "x"), file("dir/.cache/z.glb", "x"),
                file("__MACOSX/a/._Chair.GLB", "x"), file("readme.txt", "x"), file("folder/", "")), false);
        ZipInspection i = inspect(TestZips.write(tmp.resolve("m.zip"), zip), null);
        assertEquals(7, i.objects());
        assertEquals(13, i.entries());
    }

    @Test
    void zipSlipEntryIsRefusedByName() throws IOException {
        String why = refusal(TestZips.forge(List.of(file("ok.glb", "x"), file("../evil.glb", "x")), false));
        assertTrue(why.contains("'../evil.glb'"), why);
        String nested = refusal(TestZips.forge(List.of(file("a/../../b/evil.obj", "x")), false));
        assertTrue(nested.contains("'a/../../b/evil.obj'"), nested);
        String backslash = refusal(TestZips.forge(List.of(file("..\\evil.glb", "x")), false));
        assertTrue(backslash.contains("'../evil.glb'"), backslash);
    }

    @Test
    void zipSlipWrittenByJavaZipOutputStreamIsRefusedToo() throws IOException {
        Path zip = tmp.resolve("slip.zip");
        try (var out = new java.util.zip.ZipOutputStream(Files.newOutputStream(zip))) {
            TestZips.put(out, "good.glb", new byte[] {1});
            TestZips.put(out, "../evil.glb", new byte[] {1});
        }
        assertTrue(refusal(zip, null).contains("../evil.glb"));
    }

    @Test
    void absolutePathsAreRefused() throws IOException {
        assertTrue(refusal(TestZips.forge(List.of(file("/etc/cron.d/x.glb", "x")), false)).contains("absolute path"));
        assertTrue(refusal(TestZips.forge(List.of(file("C:/Windows/x.glb", "x")), false)).contains("absolute path"));
    }

    @Test
    void symlinkEntriesAreRefused() throws IOException {
        String why = refusal(TestZips.forge(List.of(file("a.glb", "x"), symlink("link.glb", "/etc/passwd")), false));
        assertTrue(why.contains("'link.glb' is a symbolic link"), why);
    }

    @Test
    void everyUnsafeEntryIsNamed() throws IOException {
        InputRefusedException e = assertThrows(InputRefusedException.class, () -> inspect(TestZips.write(
                tmp.resolve("many.zip"), TestZips.forge(List.of(file("../a.glb", "x"), symlink("b.glb", "/x"),
                        file("/c.glb", "x")), false)), null));
        assertEquals(3, e.problems().size(), e.problems().toString());
    }

    @Test
    void archiveWithoutSupportedObjectsIsRefused() throws IOException {
        String why = refusal(TestZips.forge(List.of(file("notes.txt", "x"), file("img.png", "x"),
                file(".secret.glb", "x")), false));
        assertTrue(why.contains("no supported 3D object"), why);
    }

    @Test
    void zip64WrittenByCommonsCompressWorks() throws IOException {
        Path zip = tmp.resolve("z64.zip");
        try (var out = new ZipArchiveOutputStream(zip.toFile())) {
            out.setUseZip64(Zip64Mode.Always);
            for (Path p : TestZips.realObjects().subList(0, 4)) {
                ZipArchiveEntry e = new ZipArchiveEntry("objs/" + p.getFileName());
                out.putArchiveEntry(e);
                Files.copy(p, out);
                out.closeArchiveEntry();
            }
        }
        ZipInspection i = inspect(zip, null);
        assertTrue(i.zip64());
        assertEquals(4, i.objects());
        long expected = 0;
        for (Path p : TestZips.realObjects().subList(0, 4)) {
            expected += Files.size(p);
        }
        assertEquals(expected, i.uncompressedBytes());
    }

    @Test
    void zip64RecordsWrittenByHandWork() throws IOException {
        ZipInspection i = inspect(TestZips.write(tmp.resolve("f64.zip"),
                TestZips.forge(List.of(file("a.glb", "x"), file("b/c.ply", "yy")), true)), null);
        assertTrue(i.zip64());
        assertEquals(2, i.objects());
        assertEquals(3, i.uncompressedBytes());
    }

    @Test
    void centralDirectoryClaiming9GbIsRefused() throws IOException {
        long nine = 9L * 1024 * 1024 * 1024;
        String why = refusal(TestZips.forge(List.of(claiming("huge.glb", new byte[10], nine)), false));
        assertTrue(why.contains("over the 8 GB limit"), why);
        // Sums count too: two 4.5 GB claims.
        String sum = refusal(TestZips.forge(List.of(claiming("a.glb", new byte[1], nine / 2),
                claiming("b.glb", new byte[1], nine / 2)), false));
        assertTrue(sum.contains("over the 8 GB limit"), sum);
    }

    @Test
    void truncatedArchivesAreRefusedAsDamaged() throws IOException {
        byte[] whole = Files.readAllBytes(TestZips.realAssetsZip(tmp.resolve("r.zip"), 5));
        for (int keep : new int[] {whole.length - 1, whole.length - 30, whole.length / 2, 100, 10, 0}) {
            String why = refusal(Arrays.copyOf(whole, keep));
            assertTrue(why.contains("truncated") || why.contains("not a zip"), keep + ": " + why);
        }
        // The end record survives but the central directory was cut out of the middle.
        byte[] cut = new byte[whole.length - 4096];
        System.arraycopy(whole, 0, cut, 0, 1000);
        System.arraycopy(whole, 1000 + 4096, cut, 1000, cut.length - 1000);
        String why = refusal(cut);
        assertTrue(why.contains("damaged"), why);
    }

    @Test
    void notAZipIsRefused() throws IOException {
        assertTrue(refusal(new byte[100]).contains("not a zip"));
        Path dir = Files.createDirectory(tmp.resolve("d"));
        assertTrue(assertThrows(InputRefusedException.class, () -> inspect(dir, null)).getMessage()
                .contains("directory"));
        assertTrue(assertThrows(InputRefusedException.class, () -> inspect(tmp.resolve("missing.zip"), null))
                .getMessage().contains("does not exist"));
    }

    @Test
    void archivesOver8192MbAreRefusedBeforeReadingThem() throws IOException {
        Path sparse = tmp.resolve("big.zip");
        try (RandomAccessFile f = new RandomAccessFile(sparse.toFile(), "rw")) {
            f.setLength(8193L * 1024 * 1024);
        }
        try (var src = new FileRangeSource(sparse)) {
            String why = assertThrows(InputRefusedException.class, () -> ZipInspector.inspect(src, null)).getMessage();
            assertTrue(why.contains("8192 MB"), why);
            assertEquals(0, src.readCount());
        }
    }

    @Test
    void preprocessedDatasetIsRecognisedAndItsResolutionChecked() throws IOException {
        Path zip = TestZips.write(tmp.resolve("prep.zip"), TestZips.preprocessed(512, 12));
        ZipInspection i;
        try (var src = new FileRangeSource(zip)) {
            i = ZipInspector.inspect(src, 512);
            // The tail, the central directory, and one more read for prepared_dataset.json.
            assertTrue(src.readCount() <= 3, "reads: " + src.readCount());
        }
        assertEquals(ZipInspection.Kind.PREPROCESSED, i.kind());
        assertEquals(12, i.objects());
        assertNotNull(i.preparedDataset());
        assertEquals(512, i.preparedDataset().resolution());
        assertEquals("tiny", i.preparedDataset().baseModel());
        String why = refusal(zip, 1024);
        assertTrue(why.contains("prepared at resolution 512") && why.contains("asks for 1024"), why);
    }

    @Test
    void preparedDatasetStoredUncompressedIsReadToo() throws IOException {
        String json = new String(TestZips.preprocessedJson(1024, 2));
        ZipInspection i = inspect(TestZips.write(tmp.resolve("p.zip"), TestZips.forge(List.of(
                file("dataset/prepared_dataset.json", json), file("dataset/metadata.csv", "sha256\n")), false)), 1024);
        assertEquals(ZipInspection.Kind.PREPROCESSED, i.kind());
        assertEquals("dataset/prepared_dataset.json", i.preparedDataset().path());
        assertEquals(2, i.objects());
    }

    @Test
    void mixedArchivesAreRefused() throws IOException {
        String json = new String(TestZips.preprocessedJson(512, 2));
        String why = refusal(TestZips.forge(List.of(file("prepared_dataset.json", json), file("chair.glb", "x")),
                false));
        assertTrue(why.contains("mixes 1 raw 3D objects with a preprocessed dataset"), why);
    }

    @Test
    void brokenPreparedDatasetIsRefused() throws IOException {
        assertTrue(refusal(TestZips.forge(List.of(file("prepared_dataset.json", "{not json")), false))
                .contains("not valid JSON"));
        String why = refusal(TestZips.forge(List.of(file("prepared_dataset.json",
                "{\"format_version\": 7, \"resolution\": 700, \"objects\": []}")), false));
        assertTrue(why.contains("format_version 7") && why.contains("resolution") && why.contains("no objects"), why);
    }
}

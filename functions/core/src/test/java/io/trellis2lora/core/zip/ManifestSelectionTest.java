package io.trellis2lora.core.zip;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.InputRefusedException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A manifest.csv at the root picks the objects the worker processes: only those are counted (and billed). */
class ManifestSelectionTest {
    @TempDir
    Path dir;

    private ZipInspection inspect(String manifest) throws Exception {
        return listing(manifest).inspection();
    }

    private ZipInspector.Inspected listing(String manifest) throws Exception {
        Path zip = dir.resolve("m.zip");
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
            for (String name : List.of("a.stl", "b.stl", "sub/C.stl", "d.stl")) {
                z.putNextEntry(new ZipEntry(name));
                z.write(("solid " + name + "\n").getBytes(StandardCharsets.UTF_8));
                z.closeEntry();
            }
            z.putNextEntry(new ZipEntry("manifest.csv"));
            z.write(manifest.getBytes(StandardCharsets.UTF_8));
            z.closeEntry();
        }
        return ZipInspector.inspectListing(new FileRangeSource(zip), null);
    }

    @Test
    void onlyTheObjectsTheManifestNamesAreCounted() throws Exception {
        assertEquals(2, inspect("\uFEFFfile,caption\n./a.stl,\"a chair, red\"\r\nsub\\c.stl,lamp\n").objects());
        // a name the archive lacks is skipped (the worker reports it), a repeated one counts once
        assertEquals(1, inspect("caption,file\nx,b.stl\ny,missing.stl\nz,b.stl\n").objects());
        // a preprocess plan lists the picked objects by their archive paths, in path order
        assertEquals(List.of("a.stl", "sub/C.stl"), listing("file\nsub/c.stl\n./a.stl\n").distinctObjects());
    }

    @Test
    void aManifestThatNamesNoObjectOrHasNoFileColumnIsRefused() {
        String none = String.join("\n", assertThrows(InputRefusedException.class,
                () -> inspect("file\nmissing.stl\n")).problems());
        assertTrue(none.contains("manifest.csv names no supported 3D object"), none);
        String column = String.join("\n", assertThrows(InputRefusedException.class,
                () -> inspect("path\na.stl\n")).problems());
        assertTrue(column.contains("no 'file' column"), column);
    }

    @Test
    void csvFieldsAreReadAsPythonsCsvModuleReadsThem() {
        assertEquals(List.of(List.of("file", "note"), List.of("a b.stl", "say \"hi\", twice"), List.of("c.stl", "")),
                ZipInspector.csvRecords("file,note\r\n\"a b.stl\",\"say \"\"hi\"\", twice\"\n\nc.stl,\n"));
    }
}

package io.trellis2lora.core.zip;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Byte-identical objects are one object to the worker, so they are counted (and billed) once. */
class DuplicateObjectsTest {
    @TempDir
    Path dir;

    @Test
    void byteIdenticalObjectsCountOnceFromTheCentralDirectory() throws Exception {
        Path zip = dir.resolve("dupes.zip");
        String cube = "solid a\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\n"
                + "endfacet\nendsolid a\n";
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
            for (String[] e : List.of(new String[] {"a.stl", cube}, new String[] {"copy/a.stl", cube},
                    new String[] {"copy/again.stl", cube}, new String[] {"b.stl", cube.replace("1 0 0", "2 0 0")})) {
                z.putNextEntry(new ZipEntry(e[0]));
                z.write(e[1].getBytes(StandardCharsets.UTF_8));
                z.closeEntry();
            }
        }
        ZipInspector.Inspected got = ZipInspector.inspectListing(new FileRangeSource(zip), null);
        assertEquals(List.of("a.stl", "b.stl", "copy/a.stl", "copy/again.stl"), got.objectPaths());
        assertEquals(2, got.inspection().objects(), "three copies of one file and another file");
        // what a preprocess plan lists: the first copy in path order stands for the others, as in the worker
        assertEquals(List.of("a.stl", "b.stl"), got.distinctObjects());
    }

    @Test
    void copiesOfAnObjThatNamesOtherFilesCountOnceOnlyInOneFolder() throws Exception {
        Path zip = dir.resolve("obj.zip");
        String obj = "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n";
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
            for (String[] e : List.of(new String[] {"red/a.obj", obj}, new String[] {"red/b.obj", obj},
                    new String[] {"red/m.mtl", "newmtl red\nKd 1 0 0\n"}, new String[] {"blue/a.obj", obj},
                    new String[] {"blue/m.mtl", "newmtl blue\nKd 0 0 1\n"})) {
                z.putNextEntry(new ZipEntry(e[0]));
                z.write(e[1].getBytes(StandardCharsets.UTF_8));
                z.closeEntry();
            }
        }
        // red/a.obj and red/b.obj are one object (same bytes, same m.mtl); blue/a.obj has another m.mtl.
        assertEquals(2, ZipInspector.inspect(new FileRangeSource(zip), null).objects());
    }
}

package io.trellis2lora.core.testing;

import io.trellis2lora.core.zip.ZipInspector;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/** Archives built by the tests: from ../shared/assets/real, and hand-forged hostile ones. */
public final class TestZips {
    private TestZips() {
    }

    /** Every supported 3D file under ../shared/assets/real, sorted by path. */
    public static List<Path> realObjects() throws IOException {
        Path root = TestPaths.realAssets();
        try (Stream<Path> s = Files.walk(root)) {
            return s.filter(Files::isRegularFile).filter(p -> isObject(p.getFileName().toString())).sorted().toList();
        }
    }

    public static boolean isObject(String name) {
        String lower = name.toLowerCase(Locale.ROOT);
        int dot = lower.lastIndexOf('.');
        return dot > 0 && ZipInspector.OBJECT_EXTENSIONS.contains(lower.substring(dot));
    }

    /**
     * A zip of the first {@code objects} real 3D files plus every non-3D file (textures, .bin buffers) under
     * assets/real, at their relative paths in nested folders, deflated as a user's zip tool would.
     */
    public static Path realAssetsZip(Path out, int objects) throws IOException {
        Path root = TestPaths.realAssets();
        List<Path> chosen = realObjects();
        if (chosen.size() < objects) {
            throw new IllegalStateException("only " + chosen.size() + " real objects in " + root);
        }
        chosen = chosen.subList(0, objects);
        List<Path> others;
        try (Stream<Path> s = Files.walk(root)) {
            others = s.filter(Files::isRegularFile).filter(p -> !isObject(p.getFileName().toString())).sorted()
                    .toList();
        }
        try (ZipOutputStream zip = new ZipOutputStream(Files.newOutputStream(out))) {
            for (Path p : concat(chosen, others)) {
                zip.putNextEntry(new ZipEntry("assets/" + root.relativize(p).toString().replace('\\', '/')));
                Files.copy(p, zip);
                zip.closeEntry();
            }
        }
        return out;
    }

    private static List<Path> concat(List<Path> a, List<Path> b) {
        List<Path> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }

    /** A forged entry: any name, any claimed size, Unix mode bits, data as given (stored). */
    public record Forged(String name, byte[] data, long claimedSize, int unixMode) {
        public static Forged file(String name, byte[] data) {
            return new Forged(name, data, data.length, 0100644);
        }

        public static Forged file(String name, String text) {
            return file(name, text.getBytes(StandardCharsets.UTF_8));
        }

        public static Forged symlink(String name, String target) {
            byte[] d = target.getBytes(StandardCharsets.UTF_8);
            return new Forged(name, d, d.length, 0120777);
        }

        /** Says (in the central directory) it unpacks to {@code claimed} bytes while holding {@code data}. */
        public static Forged claiming(String name, byte[] data, long claimed) {
            return new Forged(name, data, claimed, 0100644);
        }
    }

    /**
     * Writes a zip by hand, so the tests control what its central directory says: ZIP64 records when
     * {@code zip64} is set or any size needs them, Unix "made by" with the given modes, UTF-8 names.
     */
    public static byte[] forge(List<Forged> entries, boolean zip64) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        List<byte[]> central = new ArrayList<>();
        for (Forged e : entries) {
            long offset = out.size();
            byte[] name = e.name().getBytes(StandardCharsets.UTF_8);
            CRC32 crc = new CRC32();
            crc.update(e.data());
            boolean big = zip64 || e.claimedSize() >= 0xFFFFFFFFL;
            ByteBuffer loc = le(30 + name.length);
            loc.putInt(0x04034b50).putShort((short) (big ? 45 : 20)).putShort((short) 0x800).putShort((short) 0)
                    .putShort((short) 0).putShort((short) 0x21).putInt((int) crc.getValue())
                    .putInt(e.data().length).putInt(e.data().length).putShort((short) name.length).putShort((short) 0)
                    .put(name);
            out.write(loc.array());
            out.write(e.data());
            ByteBuffer extra = le(big ? 28 : 0);
            if (big) {
                extra.putShort((short) 1).putShort((short) 24).putLong(e.claimedSize()).putLong(e.data().length)
                        .putLong(offset);
            }
            ByteBuffer cen = le(46 + name.length + extra.capacity());
            cen.putInt(0x02014b50).putShort((short) ((3 << 8) | 45)).putShort((short) (big ? 45 : 20))
                    .putShort((short) 0x800).putShort((short) 0).putShort((short) 0).putShort((short) 0x21)
                    .putInt((int) crc.getValue())
                    .putInt(big ? -1 : e.data().length).putInt(big ? -1 : (int) e.claimedSize())
                    .putShort((short) name.length).putShort((short) extra.capacity()).putShort((short) 0)
                    .putShort((short) 0).putShort((short) 0).putInt(e.unixMode() << 16)
                    .putInt(big ? -1 : (int) offset).put(name).put(extra.array());
            central.add(cen.array());
        }
        long cdOffset = out.size();
        for (byte[] c : central) {
            out.write(c);
        }
        long cdSize = out.size() - cdOffset;
        if (zip64) {
            long z64 = out.size();
            ByteBuffer rec = le(56);
            rec.putInt(0x06064b50).putLong(44).putShort((short) 45).putShort((short) 45).putInt(0).putInt(0)
                    .putLong(entries.size()).putLong(entries.size()).putLong(cdSize).putLong(cdOffset);
            out.write(rec.array());
            ByteBuffer locator = le(20);
            locator.putInt(0x07064b50).putInt(0).putLong(z64).putInt(1);
            out.write(locator.array());
        }
        ByteBuffer eocd = le(22);
        eocd.putInt(0x06054b50).putShort((short) 0).putShort((short) 0)
                .putShort((short) (zip64 ? 0xFFFF : entries.size())).putShort((short) (zip64 ? 0xFFFF : entries.size()))
                .putInt(zip64 ? -1 : (int) cdSize).putInt(zip64 ? -1 : (int) cdOffset).putShort((short) 0);
        out.write(eocd.array());
        return out.toByteArray();
    }

    public static Path write(Path out, byte[] data) throws IOException {
        Files.write(out, data);
        return out;
    }

    /** A small preprocessed dataset zip: prepared_dataset.json plus a latent-like file per object. */
    public static byte[] preprocessed(int resolution, int objects) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ZipOutputStream zip = new ZipOutputStream(bytes)) {
            put(zip, "prepared_dataset.json", preprocessedJson(resolution, objects));
            put(zip, "metadata.csv", "sha256,shape_latent_tokens,pbr_latent_tokens\n".getBytes(StandardCharsets.UTF_8));
            for (int i = 0; i < objects; i++) {
                put(zip, String.format(Locale.ROOT, "ss_latents/ss_enc_conv3d_16l8_fp16_64/%064x.npz", i),
                        new byte[64]);
            }
        }
        return bytes.toByteArray();
    }

    /** A prepared_dataset.json as the preprocess step writes it (format_version 1). */
    public static byte[] preprocessedJson(int resolution, int objects) {
        StringBuilder list = new StringBuilder();
        for (int i = 0; i < objects; i++) {
            list.append(i == 0 ? "" : ",").append("{\"sha256\":\"").append(String.format(Locale.ROOT, "%064x", i))
                    .append("\",\"shape_tokens\":100,\"pbr_tokens\":100,\"renders\":16}");
        }
        String json = "{\"format_version\":1,\"resolution\":" + resolution + ",\"base_model\":\"tiny\","
                + "\"checkpoints\":{},\"encoders\":{},\"objects\":[" + list + "],\"tool_version\":\"test\","
                + "\"created_at\":\"2026-01-01T00:00:00Z\"}";
        return json.getBytes(StandardCharsets.UTF_8);
    }

    public static void put(ZipOutputStream zip, String name, byte[] data) throws IOException {
        zip.putNextEntry(new ZipEntry(name));
        zip.write(data);
        zip.closeEntry();
    }

    private static ByteBuffer le(int n) {
        return ByteBuffer.allocate(n).order(ByteOrder.LITTLE_ENDIAN);
    }

    public static void copy(Path from, OutputStream to) throws IOException {
        Files.copy(from, to);
    }
}

package io.trellis2lora.core.testing;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.zip.CRC32;

/**
 * Builds the archives of batch-containers/worker/tests/hostile_archives.json byte for byte as the worker's tests do
 * (tests/hostile_zips.py), so both readers are tested on the same bytes; each case's sha256 shows they are.
 */
public final class HostileZips {
    private HostileZips() {
    }

    public static Path casesFile() {
        return TestPaths.repo().resolve("batch-containers/worker/tests/hostile_archives.json");
    }

    public static List<JsonNode> cases() throws IOException {
        List<JsonNode> out = new ArrayList<>();
        Json.MAPPER.readTree(Files.readAllBytes(casesFile())).get("cases").forEach(out::add);
        return out;
    }

    public static byte[] build(JsonNode c) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream central = new ByteArrayOutputStream();
        boolean allZip64 = c.path("zip64").asBoolean(false);
        long count = 0;
        for (JsonNode spec : c.path("entries")) {
            int repeat = spec.path("repeat").asInt(1);
            for (int i = 0; i < repeat; i++) {
                byte[] name = spec.has("name_hex") ? hex(spec.get("name_hex").asText())
                        : spec.get("name").asText().replace("{i}", String.valueOf(i)).getBytes(StandardCharsets.UTF_8);
                byte[] data = spec.has("text") ? spec.get("text").asText().getBytes(StandardCharsets.UTF_8)
                        : spec.has("hex") ? hex(spec.get("hex").asText()) : new byte[spec.path("zeros").asInt(0)];
                long offset = out.size();
                CRC32 crc32 = new CRC32();
                crc32.update(data);
                int crc = (int) (crc32.getValue() ^ (spec.path("bad_crc").asBoolean(false) ? 0xFFFFFFFFL : 0));
                long claimed = spec.has("claimed") ? spec.get("claimed").asLong() : data.length;
                int flags = (spec.path("utf8").asBoolean(true) ? 0x800 : 0) | spec.path("flags").asInt(0);
                int method = spec.path("method").asInt(0);
                boolean big = allZip64 || claimed >= 0xFFFFFFFFL;
                int version = big ? 45 : 20;
                ByteBuffer loc = le(30 + name.length);
                loc.putInt(0x04034b50).putShort((short) version).putShort((short) flags).putShort((short) method)
                        .putShort((short) 0).putShort((short) 0x21).putInt(crc).putInt(data.length)
                        .putInt((int) claimed).putShort((short) name.length).putShort((short) 0).put(name);
                out.write(loc.array());
                out.write(data);
                ByteBuffer extra = le(big ? 28 : 0);
                if (big) {
                    extra.putShort((short) 1).putShort((short) 24).putLong(claimed).putLong(data.length)
                            .putLong(offset);
                }
                ByteBuffer cen = le(46 + name.length + extra.capacity());
                cen.putInt(0x02014b50).putShort((short) ((3 << 8) | version)).putShort((short) version)
                        .putShort((short) flags).putShort((short) method).putShort((short) 0).putShort((short) 0x21)
                        .putInt(crc).putInt(big ? -1 : data.length).putInt(big ? -1 : (int) claimed)
                        .putShort((short) name.length).putShort((short) extra.capacity()).putShort((short) 0)
                        .putShort((short) 0).putShort((short) 0).putInt(spec.path("mode").asInt(0100644) << 16)
                        .putInt(big ? -1 : (int) offset).put(name).put(extra.array());
                central.write(cen.array());
                count++;
            }
        }
        long cdOffset = out.size();
        long cdSize = central.size();
        central.writeTo(out);
        long n = c.has("eocd_entries") ? c.get("eocd_entries").asLong() : count;
        ByteBuffer record = le(20);
        if (allZip64) {
            long z64 = out.size();
            ByteBuffer rec = le(56);
            rec.putInt(0x06064b50).putLong(44).putShort((short) 45).putShort((short) 45).putInt(0).putInt(0)
                    .putLong(n).putLong(n).putLong(cdSize).putLong(cdOffset);
            out.write(rec.array());
            out.write(le(20).putInt(0x07064b50).putInt(0).putLong(z64).putInt(1).array());
            record.putInt(0x06054b50).putShort((short) 0).putShort((short) 0).putShort((short) -1)
                    .putShort((short) -1).putInt(-1).putInt(-1);
        } else {
            record.putInt(0x06054b50).putShort((short) 0).putShort((short) 0).putShort((short) n)
                    .putShort((short) n).putInt((int) cdSize).putInt((int) cdOffset);
        }
        byte[] comment = hex(c.path("comment_hex").asText(""));
        if (c.path("hidden_eocd").asBoolean(false)) {
            // a second, complete end record inside the first one's comment
            comment = ByteBuffer.allocate(22).put(record.array()).put(new byte[2]).array();
        }
        out.write(record.array());
        out.write(le(2).putShort((short) comment.length).array());
        out.write(comment);
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        all.write(hex(c.path("prefix_hex").asText("")));
        out.writeTo(all);
        all.write(hex(c.path("suffix_hex").asText("")));
        return all.toByteArray();
    }

    private static byte[] hex(String s) {
        return HexFormat.of().parseHex(s);
    }

    private static ByteBuffer le(int n) {
        return ByteBuffer.allocate(n).order(ByteOrder.LITTLE_ENDIAN);
    }
}

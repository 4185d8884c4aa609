package io.trellis2lora.core.zip;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.Charset;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Inspects a zip archive without downloading it: a ranged read of the tail finds the end-of-central-directory
 * record (and the ZIP64 one when present), the central directory is then read in chunks, and only for a
 * preprocessed dataset is one more entry (prepared_dataset.json) fetched. Written by hand because
 * java.util.zip and commons-compress both want the whole file (or a seekable local channel) to list entries.
 * The rules (limits, extensions, ignored paths) are {@link ArchiveRules}'s, and the way the directory is found and
 * read (one end record, no data before the archive, names as bytes) is the worker's extraction's too
 * (trellis2_worker.ingest.archive): both read the same entries from the same bytes, tested on one shared table of
 * hostile archives (batch-containers/worker/tests/hostile_archives.json).
 */
public final class ZipInspector {
    public static final long MAX_ARCHIVE_BYTES = ArchiveRules.MAX_ARCHIVE_BYTES;
    public static final long MAX_UNCOMPRESSED_BYTES = ArchiveRules.MAX_UNCOMPRESSED_BYTES;
    public static final Set<String> OBJECT_EXTENSIONS = ArchiveRules.OBJECT_EXTENSIONS;
    public static final String PREPARED_DATASET = ArchiveRules.PREPARED_DATASET_FILE;
    /** The worker's optional object list at the archive's root (ingest/discovery.py). */
    public static final String MANIFEST = "manifest.csv";
    private static final long MB = 1024 * 1024;
    private static final double GB = 1024.0 * 1024 * 1024;

    static final int EOCD_SIG = 0x06054b50;
    static final int ZIP64_LOCATOR_SIG = 0x07064b50;
    static final int ZIP64_EOCD_SIG = 0x06064b50;
    static final int CEN_SIG = 0x02014b50;
    static final int LOC_SIG = 0x04034b50;
    static final int EOCD_LEN = 22;
    static final int MAX_COMMENT = 0xFFFF;
    static final long MAX_CENTRAL_DIRECTORY = ArchiveRules.MAX_CENTRAL_DIRECTORY_BYTES;
    static final int MAX_PREPARED_JSON = ArchiveRules.PREPARED_DATASET_MAX_BYTES;
    static final int CHUNK = 4 * 1024 * 1024;
    /** Unsafe entries are listed up to this many, then counted, so one message stays readable. */
    static final int MAX_LISTED = 20;

    private static final Charset CP437 = Charset.isSupported("IBM437") ? Charset.forName("IBM437")
            : StandardCharsets.ISO_8859_1;

    private ZipInspector() {
    }

    /**
     * @param resolution the request's resolution: a preprocessed dataset made at another one is refused; null skips
     *                   that check
     */
    public static ZipInspection inspect(RangeSource src, Integer resolution) throws IOException {
        return inspectListing(src, resolution).inspection();
    }

    /**
     * The inspection plus what the worker checks again before extracting (entries and declared bytes are in the
     * inspection).
     *
     * @param objectPaths the 3D object files' canonical paths, sorted, for a raw archive; null for a preprocessed one
     * @param distinctObjects the objects the worker processes, as it picks them: the manifest's selection (else every
     *                        object), one path per distinct content, the first in path order; its size is the
     *                        inspection's object count. Null for a preprocessed dataset
     */
    public record Inspected(ZipInspection inspection, List<String> objectPaths, List<String> distinctObjects) {
    }

    /** As {@link #inspect}, with the object list. */
    public static Inspected inspectListing(RangeSource src, Integer resolution) throws IOException {
        long size = src.size();
        if (size > MAX_ARCHIVE_BYTES) {
            throw new InputRefusedException(String.format(Locale.ROOT,
                    "archive is %,d MB, over the %d MB limit", size / MB, MAX_ARCHIVE_BYTES / MB));
        }
        if (size < EOCD_LEN) {
            throw new InputRefusedException("data_url is not a zip archive (" + size + " bytes; truncated?)");
        }
        int tailLen = (int) Math.min(size, EOCD_LEN + MAX_COMMENT + 20L);
        long tailStart = size - tailLen;
        ByteBuffer tail = le(src.read(tailStart, tailLen));
        int eocd = findEocd(tail);
        int diskNo = u16(tail, eocd + 4);
        int cdDisk = u16(tail, eocd + 6);
        long entries = u16(tail, eocd + 10);
        long cdSize = u32(tail, eocd + 12);
        long cdOffset = u32(tail, eocd + 16);
        long eocdPos = tailStart + eocd;
        boolean zip64 = false;
        if (eocd >= 20 && tail.getInt(eocd - 20) == ZIP64_LOCATOR_SIG) {
            zip64 = true;
            long z64Pos = tail.getLong(eocd - 20 + 8);
            if (z64Pos < 0 || z64Pos > eocdPos - 56) {
                throw corrupt("the ZIP64 end-of-central-directory locator points outside the file");
            }
            ByteBuffer z = le(src.read(z64Pos, 56));
            if (z.getInt(0) != ZIP64_EOCD_SIG) {
                throw corrupt("no ZIP64 end-of-central-directory record where the locator points");
            }
            diskNo = z.getInt(16);
            cdDisk = z.getInt(20);
            entries = z.getLong(32);
            cdSize = z.getLong(40);
            cdOffset = z.getLong(48);
            eocdPos = z64Pos;
        } else if (entries == 0xFFFF || cdSize == 0xFFFFFFFFL || cdOffset == 0xFFFFFFFFL) {
            throw corrupt("the archive needs ZIP64 records but has none (truncated?)");
        }
        if (diskNo != 0 || cdDisk != 0) {
            throw new InputRefusedException("split (multi-part) zip archives are not supported; send a single .zip");
        }
        if (entries < 0 || entries > ArchiveRules.MAX_ENTRIES) {
            throw new InputRefusedException("archive holds " + Long.toUnsignedString(entries)
                    + " entries, more than the " + ArchiveRules.MAX_ENTRIES + " limit");
        }
        if (cdSize < 0 || cdSize > MAX_CENTRAL_DIRECTORY) {
            throw new InputRefusedException("the archive's central directory is over " + MAX_CENTRAL_DIRECTORY / MB
                    + " MB; too many entries");
        }
        // Exactly there: data before the archive would shift every offset, and readers differ on how to undo that.
        if (cdOffset < 0 || cdOffset + cdSize != eocdPos) {
            throw corrupt("the central directory does not end where the end-of-central-directory record begins");
        }
        if (entries * 46 > cdSize) {
            throw corrupt("the archive claims " + entries + " entries but its central directory is too small");
        }

        Scan scan = new Scan();
        ChunkReader cd = new ChunkReader(src, cdOffset, cdSize);
        for (long i = 0; i < entries; i++) {
            scan.entry(readEntry(cd, i));
        }
        if (cd.remaining() != 0) {
            throw corrupt("the central directory holds more than the " + entries + " entries it announces");
        }
        return scan.finish(src, size, (int) entries, zip64, resolution);
    }

    /** One central-directory record, with ZIP64 sizes resolved. */
    record Entry(String name, int nameLength, int madeBy, int flags, int method, long compressedSize,
            long uncompressedSize, long externalAttributes, long localHeaderOffset, long crc32) {

        boolean isSymlink() {
            int host = madeBy >>> 8;
            // Unix (3) and macOS (19) keep the st_mode in the high 16 bits; S_IFLNK = 0120000.
            return (host == 3 || host == 19) && ((externalAttributes >>> 16) & 0xF000) == 0xA000;
        }

        boolean isDirectory() {
            return name.replace('\\', '/').endsWith("/");
        }
    }

    private static Entry readEntry(ChunkReader cd, long index) throws IOException {
        ByteBuffer h = le(cd.next(46));
        if (h.getInt(0) != CEN_SIG) {
            throw corrupt("central directory entry " + index + " is damaged");
        }
        int madeBy = u16(h, 4);
        int flags = u16(h, 8);
        int method = u16(h, 10);
        long crc = u32(h, 16);
        long comp = u32(h, 20);
        long uncomp = u32(h, 24);
        int nameLen = u16(h, 28);
        int extraLen = u16(h, 30);
        int commentLen = u16(h, 32);
        long external = u32(h, 38);
        long offset = u32(h, 42);
        byte[] nameBytes = cd.next(nameLen);
        ByteBuffer extra = le(cd.next(extraLen));
        cd.next(commentLen);
        String name = decodeName(nameBytes, flags);
        // ZIP64 extended information: only the fields whose 32-bit value is saturated are present, in this order.
        int p = 0;
        while (p + 4 <= extraLen) {
            int id = u16(extra, p);
            int len = u16(extra, p + 2);
            if (p + 4 + len > extraLen) {
                break;
            }
            if (id == 0x0001) {
                int q = p + 4;
                if (uncomp == 0xFFFFFFFFL && q + 8 <= p + 4 + len) {
                    uncomp = extra.getLong(q);
                    q += 8;
                }
                if (comp == 0xFFFFFFFFL && q + 8 <= p + 4 + len) {
                    comp = extra.getLong(q);
                    q += 8;
                }
                if (offset == 0xFFFFFFFFL && q + 8 <= p + 4 + len) {
                    offset = extra.getLong(q);
                }
            }
            p += 4 + len;
        }
        if (uncomp < 0 || comp < 0 || offset < 0) {
            throw corrupt("entry '" + name + "' has an impossible size or offset");
        }
        return new Entry(name, nameLen, madeBy, flags, method, comp, uncomp, external, offset, crc);
    }

    /** Accumulates the per-entry verdicts so that every unsafe entry is named in one refusal. */
    private static final class Scan {
        final List<String> unsafe = new ArrayList<>();
        int unsafeCount;
        final List<String> objectPaths = new ArrayList<>();
        /**
         * The objects' contents as the central directory tells them (CRC-32 and size): byte-identical files are one
         * object to the worker (it merges them by hash), so they are counted (and billed) once, without reading them.
         */
        final Map<String, String> contents = new HashMap<>();  // object path -> its content key
        Entry manifest;

        /**
         * A glTF, GLB or OBJ may name other files (buffers, textures, .mtl), which the worker's key includes: two
         * copies of one such file are surely one object only in the same folder, where their names resolve alike.
         */
        private static String contentKey(String canonical, Entry e) {
            String lower = canonical.toLowerCase(Locale.ROOT);
            boolean refers = lower.endsWith(".gltf") || lower.endsWith(".glb") || lower.endsWith(".obj");
            int slash = canonical.lastIndexOf('/');
            String folder = refers && slash >= 0 ? canonical.substring(0, slash) : "";
            return e.crc32() + ":" + e.uncompressedSize() + (refers ? ":" + folder : "");
        }

        /**
         * The objects manifest.csv's {@code file} column names, matched as the worker matches them (exact path,
         * else case-insensitively; "./" and backslashes dropped): only those are processed.
         */
        private List<String> selected(List<List<String>> rows) {
            if (rows.isEmpty() || !rows.get(0).stream().map(String::strip).toList().contains("file")) {
                throw new InputRefusedException(MANIFEST + " has no 'file' column");
            }
            int column = rows.get(0).stream().map(String::strip).toList().indexOf("file");
            Map<String, String> lower = new HashMap<>();
            for (String path : objectPaths) {
                lower.putIfAbsent(path.toLowerCase(Locale.ROOT), path);
            }
            List<String> keys = new ArrayList<>();
            for (List<String> row : rows.subList(1, rows.size())) {
                String name = column < row.size() ? row.get(column).strip().replace('\\', '/') : "";
                while (name.startsWith("./")) {
                    name = name.substring(2);
                }
                String actual = contents.containsKey(name) ? name : lower.get(name.toLowerCase(Locale.ROOT));
                if (!name.isEmpty() && actual != null) {
                    keys.add(actual);
                }
            }
            if (keys.isEmpty()) {
                throw new InputRefusedException(MANIFEST + " names no supported 3D object in the archive");
            }
            return keys;
        }
        long uncompressed;
        Entry prepared;
        List<String> preparedElsewhere = new ArrayList<>();
        final Set<String> seen = new HashSet<>();
        String duplicate;
        final Set<String> files = new HashSet<>();
        final Set<String> folders = new HashSet<>();

        void entry(Entry e) {
            String name = e.name().replace('\\', '/');
            String problem = unsafeReason(name, e);
            if (problem != null) {
                if (unsafe.size() < MAX_LISTED) {
                    unsafe.add(problem);
                }
                unsafeCount++;
                return;
            }
            uncompressed += e.uncompressedSize();
            if (uncompressed < 0) {
                uncompressed = Long.MAX_VALUE;
            }
            String canonical = ArchiveRules.canonical(name);
            if (!seen.add(canonical) && duplicate == null) {
                duplicate = canonical;
            }
            List<String> parts = ArchiveRules.parts(name);
            for (int k = 1; k < parts.size(); k++) {
                folders.add(String.join("/", parts.subList(0, k)));
            }
            (e.isDirectory() ? folders : files).add(canonical);
            if (e.isDirectory() || ignored(name)) {
                return;
            }
            String base = parts.get(parts.size() - 1);
            if (parts.size() == 1 && base.equals(MANIFEST)) {
                manifest = e;
                return;
            }
            if (base.equals(PREPARED_DATASET)) {
                // At the root, or under one top folder (a zipped dataset directory).
                if (parts.size() <= ArchiveRules.PREPARED_DATASET_MAX_DEPTH
                        && (prepared == null || name.length() < prepared.name().length())) {
                    prepared = new Entry(name, e.nameLength(), e.madeBy(), e.flags(), e.method(),
                            e.compressedSize(), e.uncompressedSize(), e.externalAttributes(), e.localHeaderOffset(),
                            e.crc32());
                } else {
                    preparedElsewhere.add(name);
                }
                return;
            }
            if (ArchiveRules.isObject(canonical)) {
                objectPaths.add(canonical);
                contents.put(canonical, contentKey(canonical, e));
            }
        }

        Inspected finish(RangeSource src, long size, int entries, boolean zip64, Integer resolution)
                throws IOException {
            if (unsafeCount > 0) {
                List<String> problems = new ArrayList<>(unsafe);
                if (unsafeCount > unsafe.size()) {
                    problems.add("... and " + (unsafeCount - unsafe.size()) + " more unsafe entries");
                }
                throw new InputRefusedException(problems);
            }
            if (duplicate != null) {
                throw new InputRefusedException("archive holds two entries named '" + printable(duplicate)
                        + "' (duplicate entry name)");
            }
            Set<String> clashes = new TreeSet<>(files);
            clashes.retainAll(folders);
            if (!clashes.isEmpty()) {
                throw new InputRefusedException("entry '" + printable(clashes.iterator().next())
                        + "' is both a file and a folder in the archive");
            }
            if (uncompressed > MAX_UNCOMPRESSED_BYTES) {
                throw new InputRefusedException(String.format(Locale.ROOT,
                        "archive would unpack to %.1f GB, over the %s GB limit", uncompressed / GB,
                        new java.math.BigDecimal(MAX_UNCOMPRESSED_BYTES / GB).stripTrailingZeros().toPlainString()));
            }
            objectPaths.sort(null);
            Collection<String> picked = objectPaths;
            if (manifest != null && prepared == null && !objectPaths.isEmpty()) {
                picked = new TreeSet<>(selected(manifestRows(src, manifest)));
            }
            // The worker's discovery: the picked paths in order, a later copy of a content already seen merged into it.
            Set<String> keys = new HashSet<>();
            List<String> distinct = new ArrayList<>();
            for (String path : picked) {
                if (keys.add(contents.get(path))) {
                    distinct.add(path);
                }
            }
            int objects = distinct.size();
            if (prepared != null && objects > 0) {
                throw new InputRefusedException("archive mixes " + objects + " raw 3D objects with a preprocessed "
                        + "dataset (" + prepared.name() + "); send either raw assets or a preprocessed dataset");
            }
            if (prepared == null) {
                if (objects == 0) {
                    throw new InputRefusedException("archive holds no supported 3D object (.glb .gltf .obj .fbx "
                            + ".stl .ply .blend)" + (preparedElsewhere.isEmpty() ? ""
                            : "; " + preparedElsewhere.get(0) + " is too deep to count as a preprocessed dataset"));
                }
                return new Inspected(new ZipInspection(ZipInspection.Kind.RAW, objects, entries, size, uncompressed,
                        zip64, null, objectPaths.size() - objects), List.copyOf(objectPaths), List.copyOf(distinct));
            }
            JsonNode doc = readPrepared(src, prepared);
            var info = preparedInfo(prepared.name(), doc);
            if (resolution != null && info.resolution() != resolution) {
                throw new InputRefusedException("preprocessed dataset was prepared at resolution "
                        + info.resolution() + ", but the request asks for " + resolution
                        + "; send resolution " + info.resolution() + " or the raw assets");
            }
            int listed = doc.path("objects").size();
            return new Inspected(new ZipInspection(ZipInspection.Kind.PREPROCESSED, listed, entries, size,
                    uncompressed, zip64, info), null, null);
        }
    }

    static String unsafeReason(String name, Entry e) {
        if (name.isEmpty()) {
            return "an entry has an empty name";
        }
        if (name.indexOf('\0') >= 0) {
            return "entry '" + printable(name) + "' has a NUL character in its name";
        }
        if (name.startsWith("/") || name.matches("(?s)^[A-Za-z]:.*")) {
            return "entry '" + printable(name) + "' has an absolute path";
        }
        for (String part : name.split("/")) {
            if (part.equals("..")) {
                return "entry '" + printable(name) + "' points outside the archive ('..' in its path)";
            }
        }
        if (e.isSymlink()) {
            return "entry '" + printable(name) + "' is a symbolic link";
        }
        if ((e.flags() & 1) != 0) {
            return "entry '" + printable(name) + "' is encrypted";
        }
        if (!ArchiveRules.COMPRESSION_METHODS.containsKey(e.method())) {
            return "entry '" + printable(name) + "' uses compression method " + e.method() + "; supported: "
                    + String.join(", ", ArchiveRules.COMPRESSION_METHODS.values());
        }
        List<String> parts = ArchiveRules.parts(name);
        boolean tooLong = String.join("/", parts).getBytes(StandardCharsets.UTF_8).length > ArchiveRules.MAX_NAME_BYTES
                || parts.stream().anyMatch(p -> p.getBytes(StandardCharsets.UTF_8).length
                > ArchiveRules.MAX_NAME_PART_BYTES);
        if (tooLong) {
            return "entry '" + printable(name) + "' has a name too long for the file system (over "
                    + ArchiveRules.MAX_NAME_PART_BYTES + " bytes a part or " + ArchiveRules.MAX_NAME_BYTES
                    + " in all)";
        }
        return null;
    }

    static boolean ignored(String name) {
        return ArchiveRules.ignored(name);
    }

    /** UTF-8 when the entry says so (and then strictly: the worker refuses what does not decode), else CP437. */
    private static String decodeName(byte[] raw, int flags) {
        if ((flags & 0x800) == 0) {
            return new String(raw, CP437);
        }
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(raw)).toString();
        } catch (CharacterCodingException e) {
            throw new InputRefusedException("entry '" + printable(new String(raw, StandardCharsets.UTF_8))
                    + "' has a name that is not valid UTF-8");
        }
    }

    private static JsonNode readPrepared(RangeSource src, Entry e) throws IOException {
        if (e.compressedSize() > MAX_PREPARED_JSON || e.uncompressedSize() > MAX_PREPARED_JSON) {
            throw new InputRefusedException(e.name() + " is over 64 MB; not a prepared_dataset.json this tool wrote");
        }
        byte[] json = readEntry(src, e);
        try {
            JsonNode doc = Json.MAPPER.readTree(json);
            if (doc == null || !doc.isObject()) {
                throw new InputRefusedException(e.name() + " is not a JSON object");
            }
            return doc;
        } catch (IOException ex) {
            throw new InputRefusedException(e.name() + " is not valid JSON");
        }
    }

    /** manifest.csv's records (header first), read by ranged reads of its entry alone. */
    private static List<List<String>> manifestRows(RangeSource src, Entry e) throws IOException {
        if (e.compressedSize() > MAX_PREPARED_JSON || e.uncompressedSize() > MAX_PREPARED_JSON) {
            throw new InputRefusedException(MANIFEST + " is over 64 MB");
        }
        String text = new String(readEntry(src, e), StandardCharsets.UTF_8);
        return csvRecords(text.startsWith("\uFEFF") ? text.substring(1) : text);
    }

    /**
     * RFC 4180 records as Python's csv module reads them (quoted fields, doubled quotes, CRLF); by hand because core
     * has no CSV library and a manifest needs nothing more.
     */
    static List<List<String>> csvRecords(String text) {
        List<List<String>> rows = new ArrayList<>();
        List<String> row = new ArrayList<>();
        StringBuilder field = new StringBuilder();
        boolean quoted = false;
        boolean any = false;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (quoted) {
                if (c == '"' && i + 1 < text.length() && text.charAt(i + 1) == '"') {
                    field.append('"');
                    i++;
                } else if (c == '"') {
                    quoted = false;
                } else {
                    field.append(c);
                }
            } else if (c == '"') {
                quoted = true;
                any = true;
            } else if (c == ',') {
                row.add(field.toString());
                field.setLength(0);
                any = true;
            } else if (c == '\n' || c == '\r') {
                if (c == '\r' && i + 1 < text.length() && text.charAt(i + 1) == '\n') {
                    i++;
                }
                if (any || !field.isEmpty()) {
                    row.add(field.toString());
                    rows.add(row);
                }
                row = new ArrayList<>();
                field.setLength(0);
                any = false;
            } else {
                field.append(c);
            }
        }
        if (any || !field.isEmpty()) {
            row.add(field.toString());
            rows.add(row);
        }
        return rows;
    }

    /** An entry's bytes (stored or deflated), its local header and data read by ranged reads. */
    private static byte[] readEntry(RangeSource src, Entry e) throws IOException {
        // One ranged read for header and data: the local name is as long as the central one, and its extra
        // field is rarely over 1 KiB; a longer one costs a second read.
        long start = e.localHeaderOffset();
        int guess = (int) Math.min(src.size() - start, 30L + e.nameLength() + 1024 + e.compressedSize());
        if (guess < 30) {
            throw corrupt("no local header for " + e.name() + " where the central directory points");
        }
        byte[] head = src.read(start, guess);
        ByteBuffer loc = le(head);
        if (loc.getInt(0) != LOC_SIG) {
            throw corrupt("no local header for " + e.name() + " where the central directory points");
        }
        int skip = 30 + u16(loc, 26) + u16(loc, 28);
        long dataStart = start + skip;
        if (dataStart + e.compressedSize() > src.size()) {
            throw corrupt(e.name() + " runs past the end of the file (truncated?)");
        }
        byte[] raw = skip + e.compressedSize() <= head.length
                ? java.util.Arrays.copyOfRange(head, skip, skip + (int) e.compressedSize())
                : src.read(dataStart, (int) e.compressedSize());
        return switch (e.method()) {
            case 0 -> raw;
            case 8 -> inflate(raw, e);
            default -> throw new InputRefusedException(e.name() + " uses zip compression method " + e.method()
                    + "; only stored and deflate are supported");
        };
    }

    private static ZipInspection.PreparedDataset preparedInfo(String path, JsonNode doc) {
        List<String> problems = new ArrayList<>();
        JsonNode res = doc.get("resolution");
        if (res == null || !res.canConvertToInt() || !res.isIntegralNumber()
                || (res.intValue() != 512 && res.intValue() != 1024)) {
            problems.add(path + " has no valid resolution (512 or 1024)");
        }
        JsonNode objects = doc.get("objects");
        if (objects == null || !objects.isArray() || objects.isEmpty()) {
            problems.add(path + " lists no objects");
        }
        JsonNode version = doc.get("format_version");
        if (version == null || !version.isIntegralNumber() || version.intValue() != 1) {
            problems.add(path + " has format_version " + (version == null ? "missing" : version.asText())
                    + "; this service reads format_version 1");
        }
        if (problems.isEmpty()) {
            problems.addAll(PreparedDatasetBounds.problems(path, objects, res.intValue()));
        }
        if (!problems.isEmpty()) {
            throw new InputRefusedException(problems);
        }
        return new ZipInspection.PreparedDataset(path, res.intValue(), doc.path("base_model").asText(null),
                version.intValue());
    }

    private static byte[] inflate(byte[] raw, Entry e) {
        Inflater inf = new Inflater(true);
        try {
            inf.setInput(raw);
            ByteArrayOutputStream out = new ByteArrayOutputStream((int) Math.max(16, e.uncompressedSize()));
            byte[] buf = new byte[64 * 1024];
            while (!inf.finished()) {
                int n = inf.inflate(buf);
                if (n == 0 && (inf.needsInput() || inf.needsDictionary())) {
                    break;
                }
                out.write(buf, 0, n);
                if (out.size() > MAX_PREPARED_JSON) {
                    throw new InputRefusedException(e.name() + " inflates to over 64 MB");
                }
            }
            return out.toByteArray();
        } catch (DataFormatException ex) {
            throw new InputRefusedException(e.name() + " is damaged (cannot inflate it)");
        } finally {
            inf.end();
        }
    }

    /**
     * The one end-of-central-directory record whose comment runs exactly to the end of the file. An archive with a
     * second such record, or one hidden in the comment, is refused: two readers could pick different ones.
     */
    private static int findEocd(ByteBuffer tail) {
        int found = -1;
        int candidates = 0;
        for (int i = tail.limit() - EOCD_LEN; i >= 0; i--) {
            if (tail.getInt(i) == EOCD_SIG && i + EOCD_LEN + u16(tail, i + 20) == tail.limit()) {
                candidates++;
                found = found < 0 ? i : found;
            }
        }
        if (found < 0) {
            throw new InputRefusedException("not a zip archive, or it is truncated: "
                    + "no end-of-central-directory record at its end");
        }
        for (int i = found + EOCD_LEN; i + 4 <= tail.limit(); i++) {
            if (tail.getInt(i) == EOCD_SIG) {
                candidates++;
            }
        }
        if (candidates > 1) {
            throw new InputRefusedException("archive has more than one end-of-central-directory record; "
                    + "refusing an ambiguous archive");
        }
        return found;
    }

    private static InputRefusedException corrupt(String why) {
        return new InputRefusedException("archive is damaged: " + why);
    }

    private static String printable(String name) {
        StringBuilder sb = new StringBuilder();
        name.codePoints().limit(200).forEach(c -> {
            if (c < 0x20 || c == 0x7f) {
                sb.append(String.format(Locale.ROOT, "\\x%02x", c));
            } else {
                sb.appendCodePoint(c);
            }
        });
        return sb.toString();
    }

    private static ByteBuffer le(byte[] b) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static int u16(ByteBuffer b, int at) {
        return Short.toUnsignedInt(b.getShort(at));
    }

    private static long u32(ByteBuffer b, int at) {
        return Integer.toUnsignedLong(b.getInt(at));
    }

    /** Sequential reads over a region of the source, fetched in large ranged chunks. */
    private static final class ChunkReader {
        private final RangeSource src;
        private long pos;
        private final long end;
        private byte[] buf = new byte[0];
        private int bufPos;

        ChunkReader(RangeSource src, long start, long length) {
            this.src = src;
            this.pos = start;
            this.end = start + length;
        }

        long remaining() {
            return end - pos + (buf.length - bufPos);
        }

        byte[] next(int n) throws IOException {
            byte[] out = new byte[n];
            int filled = 0;
            while (filled < n) {
                if (bufPos == buf.length) {
                    if (pos >= end) {
                        throw corrupt("the central directory ends in the middle of an entry");
                    }
                    int len = (int) Math.min(CHUNK, end - pos);
                    try {
                        buf = src.read(pos, len);
                    } catch (EOFException e) {
                        throw corrupt("the central directory runs past the end of the file (truncated?)");
                    }
                    bufPos = 0;
                    pos += len;
                }
                int take = Math.min(n - filled, buf.length - bufPos);
                System.arraycopy(buf, bufPos, out, filled, take);
                bufPos += take;
                filled += take;
            }
            return out;
        }
    }
}

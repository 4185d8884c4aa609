package io.trellis2lora.core.zip;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The archive rules (extensions, ignored paths, limits), read from archive_rules.json: the worker's file
 * (batch-containers/worker/src/trellis2_worker/ingest/archive_rules.json), copied into this jar by the build, so
 * the inspection and the worker's extraction judge an archive by one table rather than two copies in code.
 */
public final class ArchiveRules {
    private static final JsonNode RULES = Json.resource(ArchiveRules.class, "archive_rules.json");

    public static final Set<String> OBJECT_EXTENSIONS = Set.copyOf(strings("object_extensions"));
    public static final long MAX_ARCHIVE_BYTES = RULES.get("max_archive_bytes").longValue();
    public static final long MAX_UNCOMPRESSED_BYTES = RULES.get("max_uncompressed_bytes").longValue();
    public static final long MAX_ENTRIES = RULES.get("max_entries").longValue();
    public static final long MAX_CENTRAL_DIRECTORY_BYTES = RULES.get("max_central_directory_bytes").longValue();
    public static final int MAX_NAME_BYTES = RULES.get("max_name_bytes").intValue();
    public static final int MAX_NAME_PART_BYTES = RULES.get("max_name_part_bytes").intValue();
    public static final String PREPARED_DATASET_FILE = RULES.get("prepared_dataset_file").textValue();
    public static final int PREPARED_DATASET_MAX_DEPTH = RULES.get("prepared_dataset_max_depth").intValue();
    public static final int PREPARED_DATASET_MAX_BYTES = RULES.get("prepared_dataset_max_bytes").intValue();
    /** Compression method number to its name, for the methods the worker can decompress. */
    public static final Map<Integer, String> COMPRESSION_METHODS = methods();
    private static final String IGNORED_PREFIX = RULES.get("ignored_name_prefix").textValue();
    private static final Set<String> IGNORED_FOLDERS = Set.copyOf(strings("ignored_folders"));

    private ArchiveRules() {
    }

    /** The path's parts as both readers see them: backslashes are separators, empty and '.' parts are dropped. */
    public static List<String> parts(String name) {
        List<String> out = new ArrayList<>();
        for (String p : name.replace('\\', '/').split("/")) {
            if (!p.isEmpty() && !p.equals(".")) {
                out.add(p);
            }
        }
        return out;
    }

    public static String canonical(String name) {
        return String.join("/", parts(name));
    }

    /** Hidden files and folders (any part starting with '.') and macOS resource forks are not user content. */
    public static boolean ignored(String name) {
        for (String p : parts(name)) {
            if (p.startsWith(IGNORED_PREFIX) || IGNORED_FOLDERS.contains(p)) {
                return true;
            }
        }
        return false;
    }

    /** Whether the name ends in a supported 3D extension (any case), as the worker's discovery counts it. */
    public static boolean isObject(String name) {
        List<String> p = parts(name);
        if (p.isEmpty()) {
            return false;
        }
        String base = p.get(p.size() - 1).toLowerCase(Locale.ROOT);
        int dot = base.lastIndexOf('.');
        return dot > 0 && OBJECT_EXTENSIONS.contains(base.substring(dot));
    }

    private static List<String> strings(String field) {
        List<String> out = new ArrayList<>();
        RULES.get(field).forEach(n -> out.add(n.textValue()));
        return out;
    }

    private static Map<Integer, String> methods() {
        Map<Integer, String> out = new TreeMap<>();
        RULES.get("compression_methods").fields().forEachRemaining(e -> out.put(Integer.parseInt(e.getKey()),
                e.getValue().textValue()));
        return java.util.Collections.unmodifiableMap(out); // in number order, as the file lists them
    }
}

package io.trellis2lora.core.zip;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The hard bounds on a handed-back dataset's prepared_dataset.json, checked before its object count is priced.
 * They mirror the worker's trellis2_worker.dataset.limits (code there, not a data file), held together by one table
 * of cases both sides' tests read: batch-containers/worker/tests/dataset_bounds_cases.json.
 */
public final class PreparedDatasetBounds {
    /** Objects per dataset (each costs at least ~1 MB, and archives are capped at 8 GiB). */
    public static final int MAX_OBJECTS = 10_000;
    /** Condition views per object: no more than the renderer makes. */
    public static final int MAX_RENDERS = 16;
    /** Latent tokens per object: one per cell of the (R/16)^3 latent grid at most. */
    public static final Map<Integer, Integer> MAX_TOKENS = Map.of(512, 32 * 32 * 32, 1024, 64 * 64 * 64);
    static final int MAX_LISTED = 20;
    private static final Pattern SHA256 = Pattern.compile("^[0-9a-f]{64}$");

    private PreparedDatasetBounds() {
    }

    /** Every bound the objects of {@code doc} (made at {@code resolution}) break, one line each; empty when none. */
    public static List<String> problems(String path, JsonNode objects, int resolution) {
        List<String> out = new ArrayList<>();
        if (objects.size() > MAX_OBJECTS) {
            out.add(path + " lists " + objects.size() + " objects, more than the " + MAX_OBJECTS + " limit");
            return out;
        }
        Integer maxTokens = MAX_TOKENS.get(resolution);
        Set<String> seen = new HashSet<>();
        for (JsonNode o : objects) {
            if (out.size() >= MAX_LISTED) {
                out.add("... and more problems in " + path);
                break;
            }
            JsonNode sha = o.get("sha256");
            if (sha == null || !sha.isTextual() || !SHA256.matcher(sha.textValue()).matches()) {
                String shown = o.toString();
                out.add(path + " has an object without a valid sha256: "
                        + (shown.length() > 80 ? shown.substring(0, 80) : shown));
                continue;
            }
            String id = sha.textValue().substring(0, 12);
            if (!seen.add(sha.textValue())) {
                out.add(path + " lists object " + id + " twice");
                continue;
            }
            for (String key : List.of("shape_tokens", "pbr_tokens", "renders")) {
                JsonNode n = o.get(key);
                if (n == null || !n.isIntegralNumber() || !n.canConvertToLong() || n.longValue() < 0) {
                    out.add("object " + id + " in " + path + " has no valid '" + key + "'");
                } else if (key.equals("renders") && n.longValue() > MAX_RENDERS) {
                    out.add("object " + id + " in " + path + " has " + n.longValue() + " renders, more than the "
                            + MAX_RENDERS + " the renderer makes");
                } else if (!key.equals("renders") && maxTokens != null && n.longValue() > maxTokens) {
                    out.add("object " + id + " in " + path + " has " + n.longValue() + " " + key + ", more than the "
                            + maxTokens + " a " + resolution + " dataset can hold");
                }
            }
        }
        return out;
    }
}

package io.trellis2lora.cli;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What a generate request may ask for, read from generate_options.json: the worker's file
 * (batch-containers/worker/src/trellis2_worker/generate/generate_options.json), copied into this jar by the build,
 * so generate.json is judged here by the table the worker's generate judges its flags by.
 */
final class GenerateOptions {
    private static final JsonNode OPTIONS = Json.resource(GenerateOptions.class, "generate_options.json");

    /** Resolution to the pipeline types that sample at it, in the file's order. */
    static final Map<Integer, List<String>> PIPELINE_TYPES_AT = pipelineTypes();
    static final List<String> PIPELINE_TYPES = PIPELINE_TYPES_AT.values().stream().flatMap(List::stream).toList();
    static final int DEFAULT_RESOLUTION = OPTIONS.get("default_resolution").intValue();
    static final List<Integer> TEXTURE_SIZES = ints(OPTIONS.get("texture_sizes"));
    static final int DEFAULT_TEXTURE_SIZE = OPTIONS.get("default_texture_size").intValue();
    static final int DEFAULT_DECIMATION_TARGET = OPTIONS.at("/decimation_target/default").intValue();
    static final int MIN_DECIMATION_TARGET = OPTIONS.at("/decimation_target/min").intValue();
    static final long DEFAULT_SEED = OPTIONS.at("/seed/default").longValue();
    static final long MIN_SEED = OPTIONS.at("/seed/min").longValue();
    static final long MAX_SEED = OPTIONS.at("/seed/max").longValue();
    static final double DEFAULT_SCALE = OPTIONS.at("/lora_scale/default").doubleValue();
    static final double MAX_ABS_SCALE = OPTIONS.at("/lora_scale/max_abs").doubleValue();
    static final List<String> SAMPLER_STAGES = names(OPTIONS.get("sampler_stages"));
    private static final JsonNode SAMPLER_PARAMS = OPTIONS.get("sampler_params");

    private GenerateOptions() {
    }

    static String defaultPipelineType(int resolution) {
        return OPTIONS.at("/resolutions/" + resolution + "/default_pipeline_type").textValue();
    }

    /**
     * One sampler parameter checked against its rule; null when it passes, else the problem, worded as the worker
     * words it ("WHERE.KEY: expected RULE, got VALUE").
     */
    static String samplerProblem(String where, String key, JsonNode value) {
        JsonNode rule = SAMPLER_PARAMS.get(key);
        if (rule == null) {
            return where + ": unknown sampler parameter '" + key + "' (known: "
                    + String.join(", ", names(SAMPLER_PARAMS)) + ")";
        }
        return accepts(rule, value) ? null
                : where + "." + key + ": expected " + describe(rule) + ", got " + Json.write(value);
    }

    private static boolean accepts(JsonNode rule, JsonNode v) {
        if (rule.path("interval").asBoolean()) {
            return v != null && v.isArray() && v.size() == 2 && v.get(0).isNumber() && v.get(1).isNumber()
                    && rule.get("min").doubleValue() <= v.get(0).doubleValue()
                    && v.get(0).doubleValue() <= v.get(1).doubleValue()
                    && v.get(1).doubleValue() <= rule.get("max").doubleValue();
        }
        if (v == null || !v.isNumber() || (rule.path("integer").asBoolean() && !v.isIntegralNumber())) {
            return false;
        }
        double x = v.doubleValue();
        return Double.isFinite(x) && (!rule.has("min") || x >= rule.get("min").doubleValue())
                && (!rule.has("max") || x <= rule.get("max").doubleValue())
                && (!rule.has("above") || x > rule.get("above").doubleValue());
    }

    /** The rule in words, as the worker's options.describe_param says it. */
    static String describe(JsonNode rule) {
        if (rule.path("interval").asBoolean()) {
            return "[low, high] with " + bound(rule.get("min")) + " <= low <= high <= " + bound(rule.get("max"));
        }
        String kind = rule.path("integer").asBoolean() ? "an integer" : "a number";
        if (rule.has("above")) {
            return kind + " above " + bound(rule.get("above"));
        }
        if (rule.has("min") && rule.has("max")) {
            return kind + " from " + bound(rule.get("min")) + " to " + bound(rule.get("max"));
        }
        return kind;
    }

    /** A bound as Python's {:g} writes the file's numbers: 1000, 0.5. */
    static String bound(JsonNode n) {
        return bound(n.doubleValue());
    }

    static String bound(double x) {
        return x == Math.rint(x) && Math.abs(x) < 1e15 ? String.valueOf((long) x) : String.valueOf(x);
    }

    private static Map<Integer, List<String>> pipelineTypes() {
        Map<Integer, List<String>> out = new LinkedHashMap<>();
        OPTIONS.get("resolutions").fields().forEachRemaining(e -> out.put(Integer.parseInt(e.getKey()),
                texts(e.getValue().get("pipeline_types"))));
        return Collections.unmodifiableMap(out);
    }

    private static List<Integer> ints(JsonNode array) {
        List<Integer> out = new ArrayList<>();
        array.forEach(n -> out.add(n.intValue()));
        return List.copyOf(out);
    }

    /** An object's field names, in the file's order. */
    private static List<String> names(JsonNode object) {
        List<String> out = new ArrayList<>();
        object.fieldNames().forEachRemaining(out::add);
        return List.copyOf(out);
    }

    private static List<String> texts(JsonNode array) {
        List<String> out = new ArrayList<>();
        array.forEach(n -> out.add(n.textValue()));
        return List.copyOf(out);
    }
}

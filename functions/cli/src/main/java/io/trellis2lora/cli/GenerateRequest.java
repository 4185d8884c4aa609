package io.trellis2lora.cli;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectReader;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.validation.RequestFiles;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * {@code generate}'s REQUEST.json: the image, up to one LoRA per stage with its scale, and the generation settings.
 * Unknown fields are refused by name; absent ones take their defaults ({@link #withDefaults}).
 */
record GenerateRequest(
        @JsonProperty("image_url") String imageUrl,
        @JsonProperty("sparse_structure_lora_url") String sparseStructureLoraUrl,
        @JsonProperty("geometry_lora_url") String geometryLoraUrl,
        @JsonProperty("texture_lora_url") String textureLoraUrl,
        @JsonProperty("sparse_structure_lora_scale") Double sparseStructureLoraScale,
        @JsonProperty("geometry_lora_scale") Double geometryLoraScale,
        @JsonProperty("texture_lora_scale") Double textureLoraScale,
        @JsonProperty("seed") Long seed,
        @JsonProperty("resolution") Integer resolution,
        @JsonProperty("pipeline_type") String pipelineType,
        @JsonProperty("texture_size") Integer textureSize,
        @JsonProperty("decimation_target") Integer decimationTarget,
        @JsonProperty("export_vxz") Boolean exportVxz,
        @JsonProperty("sampler") Map<String, Map<String, JsonNode>> sampler) {

    static final List<String> FIELDS = List.of("image_url", "sparse_structure_lora_url", "geometry_lora_url",
            "texture_lora_url", "sparse_structure_lora_scale", "geometry_lora_scale", "texture_lora_scale", "seed",
            "resolution", "pipeline_type", "texture_size", "decimation_target", "export_vxz", "sampler");

    /** A number where an integer belongs is refused rather than cut (1.5 is no seed). */
    private static final ObjectReader READER = Json.MAPPER.readerFor(GenerateRequest.class)
            .without(DeserializationFeature.ACCEPT_FLOAT_AS_INT);

    /** One stage's LoRA: the worker's flag stem, where the file is, and how strongly it applies. */
    record Lora(Denoiser stage, String url, double scale) {
        String flag() {
            return "--" + stage.wireName().replace('_', '-');
        }
    }

    /**
     * Reads and checks REQUEST.json; local paths (image, LoRAs) become absolute, from the request file's folder.
     * Every problem is reported at once. The allowed values are the worker's ({@link GenerateOptions}).
     */
    static GenerateRequest parse(Path requestFile, boolean allowBaseOnly) throws java.io.IOException {
        String body = RequestFiles.read(requestFile);
        GenerateRequest r;
        try {
            r = READER.readValue(body);
        } catch (UnrecognizedPropertyException e) {
            throw new InputRefusedException("unknown field '" + e.getPropertyName() + "' in " + requestFile.getFileName()
                    + " (known: " + String.join(", ", FIELDS) + ")");
        } catch (JsonMappingException e) {
            if (Json.trailing(e)) {
                throw new InputRefusedException(requestFile.getFileName() + " is not valid JSON: " + Json.problem(e));
            }
            throw new InputRefusedException(fieldPath(e) + " has the wrong type: " + expected(e));
        } catch (JsonProcessingException e) {
            throw new InputRefusedException(requestFile.getFileName() + " is not valid JSON: " + Json.problem(e));
        }
        if (r == null) {
            throw new InputRefusedException(requestFile.getFileName() + " must be a JSON object");
        }
        r = r.withDefaults();
        List<String> problems = new ArrayList<>();
        String image = location("image_url", r.imageUrl, requestFile, problems);
        if (r.imageUrl == null) {
            problems.add("image_url is required");
        }
        String ss = location("sparse_structure_lora_url", r.sparseStructureLoraUrl, requestFile, problems);
        String geo = location("geometry_lora_url", r.geometryLoraUrl, requestFile, problems);
        String tex = location("texture_lora_url", r.textureLoraUrl, requestFile, problems);
        if (!allowBaseOnly && r.sparseStructureLoraUrl == null && r.geometryLoraUrl == null
                && r.textureLoraUrl == null) {
            problems.add("no LoRA given (sparse_structure_lora_url, geometry_lora_url or texture_lora_url): the hosted "
                    + "endpoint requires at least one; pass --allow-base-only to generate with the base model alone");
        }
        scale("sparse_structure_lora_scale", r.sparseStructureLoraScale, problems);
        scale("geometry_lora_scale", r.geometryLoraScale, problems);
        scale("texture_lora_scale", r.textureLoraScale, problems);
        if (r.seed < GenerateOptions.MIN_SEED || r.seed > GenerateOptions.MAX_SEED) {
            problems.add("seed must be from " + GenerateOptions.MIN_SEED + " to " + GenerateOptions.MAX_SEED
                    + ", got " + r.seed);
        }
        List<String> types = GenerateOptions.PIPELINE_TYPES_AT.get(r.resolution);
        if (types == null) {
            problems.add("resolution must be one of " + join(GenerateOptions.PIPELINE_TYPES_AT.keySet()) + ", got "
                    + r.resolution);
        }
        if (r.pipelineType != null && !(types != null ? types : GenerateOptions.PIPELINE_TYPES)
                .contains(r.pipelineType)) {
            problems.add("pipeline_type must be one of " + String.join(", ", types != null ? types
                    : GenerateOptions.PIPELINE_TYPES) + (types != null ? " at resolution " + r.resolution : "")
                    + ", got '" + r.pipelineType + "'");
        }
        if (!GenerateOptions.TEXTURE_SIZES.contains(r.textureSize)) {
            problems.add("texture_size must be one of " + join(GenerateOptions.TEXTURE_SIZES) + ", got "
                    + r.textureSize);
        }
        if (r.decimationTarget < GenerateOptions.MIN_DECIMATION_TARGET) {
            problems.add("decimation_target must be 0 (keep every face) or a face count, got " + r.decimationTarget);
        }
        if (r.sampler != null) {
            r.sampler.forEach((stage, params) -> {
                if (!GenerateOptions.SAMPLER_STAGES.contains(stage)) {
                    problems.add("sampler." + stage + " is not a stage (known: "
                            + String.join(", ", GenerateOptions.SAMPLER_STAGES) + ")");
                } else if (params != null) {
                    params.forEach((p, v) -> {
                        String problem = GenerateOptions.samplerProblem("sampler." + stage, p, v);
                        if (problem != null) {
                            problems.add(problem);
                        }
                    });
                }
            });
        }
        if (!problems.isEmpty()) {
            throw new InputRefusedException(problems);
        }
        return new GenerateRequest(image, ss, geo, tex, r.sparseStructureLoraScale, r.geometryLoraScale,
                r.textureLoraScale, r.seed, r.resolution, r.pipelineType, r.textureSize, r.decimationTarget,
                r.exportVxz, r.sampler);
    }

    GenerateRequest withDefaults() {
        return new GenerateRequest(imageUrl, sparseStructureLoraUrl, geometryLoraUrl, textureLoraUrl,
                or(sparseStructureLoraScale, GenerateOptions.DEFAULT_SCALE),
                or(geometryLoraScale, GenerateOptions.DEFAULT_SCALE), or(textureLoraScale, GenerateOptions.DEFAULT_SCALE),
                or(seed, GenerateOptions.DEFAULT_SEED), or(resolution, GenerateOptions.DEFAULT_RESOLUTION), pipelineType,
                or(textureSize, GenerateOptions.DEFAULT_TEXTURE_SIZE),
                or(decimationTarget, GenerateOptions.DEFAULT_DECIMATION_TARGET), or(exportVxz, false), sampler);
    }

    /** The LoRAs given, in the pipeline's stage order. */
    List<Lora> loras() {
        List<Lora> out = new ArrayList<>();
        if (sparseStructureLoraUrl != null) {
            out.add(new Lora(Denoiser.SPARSE_STRUCTURE, sparseStructureLoraUrl, sparseStructureLoraScale));
        }
        if (geometryLoraUrl != null) {
            out.add(new Lora(Denoiser.GEOMETRY, geometryLoraUrl, geometryLoraScale));
        }
        if (textureLoraUrl != null) {
            out.add(new Lora(Denoiser.TEXTURE, textureLoraUrl, textureLoraScale));
        }
        return out;
    }

    /** The sampler overrides as the worker takes them: STAGE.PARAM=VALUE, the value JSON-encoded. */
    List<String> samplerOverrides() {
        List<String> out = new ArrayList<>();
        if (sampler != null) {
            sampler.forEach((stage, params) -> {
                if (params != null) {
                    params.forEach((p, v) -> out.add(stage + "." + p + "=" + Json.write(v)));
                }
            });
        }
        return out;
    }

    /** A local path (made absolute, and it must exist), an https:// URL or an s3:// URI; null when absent. */
    private static String location(String field, String url, Path requestFile, List<String> problems) {
        if (url == null) {
            return null;
        }
        String lower = url.strip().toLowerCase(Locale.ROOT);
        if (lower.isEmpty()) {
            problems.add(field + " must not be empty");
            return null;
        }
        if (lower.matches("^[a-z][a-z0-9+.-]*://.*")) {
            if (!lower.startsWith("https://") && !lower.startsWith("s3://")) {
                problems.add(field + " must be a local path, an https:// URL or an s3:// URI");
                return null;
            }
            return url.strip();
        }
        String path = RequestFiles.resolve(requestFile, url.strip());
        if (!Files.isRegularFile(Path.of(path))) {
            problems.add(field + ": no such file " + path);
            return null;
        }
        return path;
    }

    private static void scale(String field, double v, List<String> problems) {
        if (!(Math.abs(v) <= GenerateOptions.MAX_ABS_SCALE)) {
            problems.add(field + " must be a number within ±" + GenerateOptions.bound(GenerateOptions.MAX_ABS_SCALE) + ", got " + v);
        }
    }

    private static String join(java.util.Collection<Integer> values) {
        return String.join(", ", values.stream().map(String::valueOf).toList());
    }

    private static <T> T or(T v, T fallback) {
        return v == null ? fallback : v;
    }

    private static String fieldPath(JsonMappingException e) {
        StringBuilder sb = new StringBuilder();
        for (JsonMappingException.Reference ref : e.getPath()) {
            sb.append(sb.length() == 0 ? "" : ".")
                    .append(ref.getFieldName() != null ? ref.getFieldName() : String.valueOf(ref.getIndex()));
        }
        return sb.length() == 0 ? "the request" : sb.toString();
    }

    private static String expected(JsonMappingException e) {
        Class<?> type = e instanceof com.fasterxml.jackson.databind.exc.MismatchedInputException m
                ? m.getTargetType() : null;
        if (type == Integer.class || type == int.class || type == Long.class || type == long.class) {
            return "expected an integer";
        }
        if (type == Double.class || type == double.class) {
            return "expected a number";
        }
        if (type == Boolean.class || type == boolean.class) {
            return "expected true or false";
        }
        if (type == String.class) {
            return "expected a string";
        }
        return type != null && Map.class.isAssignableFrom(type) ? "expected an object" : "not the expected shape";
    }
}

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
import java.util.Set;
import java.util.regex.Pattern;

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
        @JsonProperty("seed") Integer seed,
        @JsonProperty("resolution") Integer resolution,
        @JsonProperty("pipeline_type") String pipelineType,
        @JsonProperty("texture_size") Integer textureSize,
        @JsonProperty("decimation_target") Integer decimationTarget,
        @JsonProperty("export_vxz") Boolean exportVxz,
        @JsonProperty("sampler") Map<String, Map<String, JsonNode>> sampler) {

    static final List<String> FIELDS = List.of("image_url", "sparse_structure_lora_url", "geometry_lora_url",
            "texture_lora_url", "sparse_structure_lora_scale", "geometry_lora_scale", "texture_lora_scale", "seed",
            "resolution", "pipeline_type", "texture_size", "decimation_target", "export_vxz", "sampler");
    static final Set<Integer> RESOLUTIONS = Set.of(512, 1024);
    static final List<String> PIPELINE_TYPES = List.of("512", "1024", "1024_cascade", "1536_cascade");
    static final Set<Integer> TEXTURE_SIZES = Set.of(1024, 2048, 4096);
    static final List<String> SAMPLER_STAGES = List.of("sparse_structure", "shape", "texture");
    static final double MAX_SCALE = 2.0;
    static final int MIN_FACES = 1000;
    private static final Pattern PARAM = Pattern.compile("[A-Za-z_][A-Za-z0-9_]{0,63}");

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
     * Every problem is reported at once.
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
        if (r.seed < 0) {
            problems.add("seed must be 0 or more, got " + r.seed);
        }
        if (!RESOLUTIONS.contains(r.resolution)) {
            problems.add("resolution must be 512 or 1024, got " + r.resolution);
        }
        if (r.pipelineType != null && !PIPELINE_TYPES.contains(r.pipelineType)) {
            problems.add("pipeline_type must be one of " + String.join(", ", PIPELINE_TYPES) + ", got '"
                    + r.pipelineType + "'");
        }
        if (!TEXTURE_SIZES.contains(r.textureSize)) {
            problems.add("texture_size must be 1024, 2048 or 4096, got " + r.textureSize);
        }
        if (r.decimationTarget < MIN_FACES) {
            problems.add("decimation_target must be at least " + MIN_FACES + " faces, got " + r.decimationTarget);
        }
        if (r.sampler != null) {
            r.sampler.forEach((stage, params) -> {
                if (!SAMPLER_STAGES.contains(stage)) {
                    problems.add("sampler." + stage + " is not a stage (known: " + String.join(", ", SAMPLER_STAGES)
                            + ")");
                } else if (params != null) {
                    params.keySet().stream().filter(p -> !PARAM.matcher(p).matches()).forEach(p -> problems.add(
                            "sampler." + stage + ": '" + p + "' is not a parameter name"));
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
                or(sparseStructureLoraScale, 1.0), or(geometryLoraScale, 1.0), or(textureLoraScale, 1.0),
                or(seed, 0), or(resolution, 512), pipelineType, or(textureSize, 2048), or(decimationTarget, 500_000),
                or(exportVxz, false), sampler);
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
        if (!(v >= 0 && v <= MAX_SCALE)) {
            problems.add(field + " must be between 0 and " + MAX_SCALE + ", got " + v);
        }
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
        if (type == Integer.class || type == int.class) {
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

package io.trellis2lora.core.model;

import com.fasterxml.jackson.annotation.JsonAnyGetter;
import com.fasterxml.jackson.annotation.JsonAnySetter;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import java.math.BigDecimal;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * One trained LoRA: the record the training job writes beside the adapter ({@code <denoiser>.json}), as the result
 * lists it. The hosted contract's fields are typed; the worker's other fields (e.g. {@code metrics}) ride along in
 * {@link #extras}, and every extra {@code *_file} object is a file like {@code lora_file}.
 */
public record Adapter(
        @JsonProperty(value = "denoiser", required = true) Denoiser denoiser,
        @JsonProperty("resolution") int resolution,
        @JsonProperty(value = "lora_file", required = true) FileRef loraFile,
        @JsonProperty("rank") int rank,
        @JsonProperty("training_steps") int trainingSteps,
        @JsonProperty("learning_rate") BigDecimal learningRate,
        @JsonAnySetter Map<String, JsonNode> extras) {

    public Adapter {
        extras = extras == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(extras));
    }

    public Adapter(Denoiser denoiser, int resolution, FileRef loraFile, int rank, int trainingSteps,
                   BigDecimal learningRate) {
        this(denoiser, resolution, loraFile, rank, trainingSteps, learningRate, Map.of());
    }

    @Override
    @JsonAnyGetter
    public Map<String, JsonNode> extras() {
        return extras;
    }

    /** A file object beside lora_file: a field named {@code *_file} holding an object with a {@code url}. */
    public static boolean isFileField(String name, JsonNode value) {
        return name.endsWith("_file") && value != null && value.isObject() && value.path("url").isTextual();
    }

    /** The same adapter with lora_file and every extra file object rewritten (stored key to URI, or presigned). */
    public Adapter mapFiles(UnaryOperator<FileRef> f) {
        Map<String, JsonNode> mapped = new LinkedHashMap<>();
        extras.forEach((name, value) -> mapped.put(name, isFileField(name, value)
                ? Json.MAPPER.valueToTree(f.apply(Json.MAPPER.convertValue(value, FileRef.class))) : value));
        return new Adapter(denoiser, resolution, f.apply(loraFile), rank, trainingSteps, learningRate, mapped);
    }
}

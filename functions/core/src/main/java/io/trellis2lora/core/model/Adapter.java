package io.trellis2lora.core.model;

import com.fasterxml.jackson.annotation.JsonProperty;
import java.math.BigDecimal;

/** One trained LoRA in the result. */
public record Adapter(
        @JsonProperty(value = "denoiser", required = true) Denoiser denoiser,
        @JsonProperty("resolution") int resolution,
        @JsonProperty(value = "lora_file", required = true) FileRef loraFile,
        @JsonProperty("rank") int rank,
        @JsonProperty("training_steps") int trainingSteps,
        @JsonProperty("learning_rate") BigDecimal learningRate) {

    public Adapter withLoraFile(FileRef file) {
        return new Adapter(denoiser, resolution, file, rank, trainingSteps, learningRate);
    }
}

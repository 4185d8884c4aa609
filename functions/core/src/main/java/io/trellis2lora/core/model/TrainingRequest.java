package io.trellis2lora.core.model;

import com.fasterxml.jackson.annotation.JsonProperty;
import java.math.BigDecimal;
import java.util.List;

/**
 * A validated training request, with every default filled in (same names and defaults as the hosted endpoint).
 * Build it through {@link io.trellis2lora.core.validation.RequestValidator}, which reports every problem at once.
 */
public record TrainingRequest(
        @JsonProperty("data_url") String dataUrl,
        @JsonProperty("denoisers") List<Denoiser> denoisers,
        @JsonProperty("resolution") int resolution,
        @JsonProperty("rank") int rank,
        @JsonProperty("learning_rate") BigDecimal learningRate,
        @JsonProperty("training_steps") int trainingSteps) {

    public static final List<Denoiser> DEFAULT_DENOISERS = List.of(Denoiser.TEXTURE);
    public static final int DEFAULT_RESOLUTION = 512;
    public static final int DEFAULT_RANK = 32;
    public static final BigDecimal DEFAULT_LEARNING_RATE = new BigDecimal("0.0001");
    public static final int DEFAULT_TRAINING_STEPS = 1000;

    public TrainingRequest {
        denoisers = List.copyOf(denoisers);
    }

    /** The same request reading its archive from elsewhere (a staged copy of an https archive). */
    public TrainingRequest withDataUrl(String url) {
        return new TrainingRequest(url, denoisers, resolution, rank, learningRate, trainingSteps);
    }
}

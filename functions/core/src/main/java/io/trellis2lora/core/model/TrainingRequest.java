package io.trellis2lora.core.model;

import com.fasterxml.jackson.annotation.JsonProperty;
import java.math.BigDecimal;
import java.util.List;

/**
 * A validated training request, with every default filled in (same names and defaults as the hosted endpoint).
 * Build it through {@link io.trellis2lora.core.validation.RequestValidator}, which reports every problem at once.
 *
 * <p>{@code evaluate} is ours, not the hosted endpoint's: false skips the evaluation after training (the held-out
 * generations and the preview panel; the worker's {@code --eval-objects 0}). A request.json stored before the field
 * existed reads as true, the default.
 */
public record TrainingRequest(
        @JsonProperty("data_url") String dataUrl,
        @JsonProperty("denoisers") List<Denoiser> denoisers,
        @JsonProperty("resolution") int resolution,
        @JsonProperty("rank") int rank,
        @JsonProperty("learning_rate") BigDecimal learningRate,
        @JsonProperty("training_steps") int trainingSteps,
        @JsonProperty("evaluate") Boolean evaluate) {

    public static final List<Denoiser> DEFAULT_DENOISERS = List.of(Denoiser.TEXTURE);
    public static final int DEFAULT_RESOLUTION = 512;
    public static final int DEFAULT_RANK = 32;
    public static final BigDecimal DEFAULT_LEARNING_RATE = new BigDecimal("0.0001");
    public static final int DEFAULT_TRAINING_STEPS = 1000;
    public static final boolean DEFAULT_EVALUATE = true;

    public TrainingRequest {
        denoisers = List.copyOf(denoisers);
        evaluate = evaluate == null ? DEFAULT_EVALUATE : evaluate;
    }

    /** The request with the default {@code evaluate}. */
    public TrainingRequest(String dataUrl, List<Denoiser> denoisers, int resolution, int rank, BigDecimal learningRate,
                           int trainingSteps) {
        this(dataUrl, denoisers, resolution, rank, learningRate, trainingSteps, DEFAULT_EVALUATE);
    }

    /** The same request reading its archive from elsewhere (a staged copy of an https archive). */
    public TrainingRequest withDataUrl(String url) {
        return new TrainingRequest(url, denoisers, resolution, rank, learningRate, trainingSteps, evaluate);
    }
}

package io.trellis2lora.orchestration;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.pricing.PriceBreakdown;
import java.util.List;

/**
 * Prepare's answer, kept by the state machine at {@code $.prepared}: what the input is, where the dataset comes
 * from, and the exact worker command of every job (the Batch tasks pass {@code command} as the container command).
 *
 * <p>{@code preprocess_shards} above 1: {@code preprocess} is an array job of that many children (each takes its
 * block of the stored shard plan, its output and report named with the literal {@code {shard}}), and {@code merge}
 * assembles their datasets into the one at {@code dataset_uri}; otherwise {@code merge} is null.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public record Plan(
        @JsonProperty("request_id") String requestId,
        @JsonProperty("base_model") String baseModel,
        @JsonProperty("input_kind") String inputKind,
        @JsonProperty("input_uri") String inputUri,
        @JsonProperty("objects") int objects,
        @JsonProperty("dataset_key") String datasetKey,
        @JsonProperty("dataset_uri") String datasetUri,
        @JsonProperty("cached") boolean cached,
        @JsonProperty("needs_preprocess") boolean needsPreprocess,
        @JsonProperty("estimate") PriceBreakdown estimate,
        @JsonProperty("preprocess") Job preprocess,
        @JsonProperty("preprocess_shards") int preprocessShards,
        @JsonProperty("merge") Job merge,
        @JsonProperty("stages") List<Stage> stages,
        @JsonProperty("stage_count") int stageCount) {

    /** One Batch job: its name, the worker command line (after the image's entry point), its output and report. */
    @JsonIgnoreProperties(ignoreUnknown = true)
    public record Job(
            @JsonProperty("job_name") String jobName,
            @JsonProperty("command") List<String> command,
            @JsonProperty("output_uri") String outputUri,
            @JsonProperty("report_uri") String reportUri) {
    }

    /** One Map item: a training job for one denoiser. */
    @JsonIgnoreProperties(ignoreUnknown = true)
    public record Stage(
            @JsonProperty("request_id") String requestId,
            @JsonProperty("denoiser") Denoiser denoiser,
            @JsonProperty("job_name") String jobName,
            @JsonProperty("command") List<String> command,
            @JsonProperty("output_uri") String outputUri,
            @JsonProperty("report_uri") String reportUri) {
    }
}

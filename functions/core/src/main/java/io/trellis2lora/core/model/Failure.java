package io.trellis2lora.core.model;

import com.fasterxml.jackson.annotation.JsonProperty;

/** A stage that did not produce an adapter, with a one-line reason. */
public record Failure(
        @JsonProperty(value = "denoiser", required = true) Denoiser denoiser,
        @JsonProperty(value = "error", required = true) String error) {
}

package io.trellis2lora.core.api;

import com.fasterxml.jackson.annotation.JsonProperty;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.pricing.PriceBreakdown;
import io.trellis2lora.core.zip.ZipInspection;

/** requests/&lt;id&gt;/request.json: the validated input, where to read the archive, what it holds, the estimate. */
public record StoredRequest(
        @JsonProperty("request_id") String requestId,
        @JsonProperty("created_at") String createdAt,
        @JsonProperty("idempotency_key_sha256") String idempotencyKeySha256,
        @JsonProperty("request") TrainingRequest request,
        @JsonProperty("input_uri") String inputUri,
        @JsonProperty("inspection") ZipInspection inspection,
        @JsonProperty("estimate") PriceBreakdown estimate) {
}

package io.trellis2lora.core.pricing;

import com.fasterxml.jackson.annotation.JsonProperty;
import io.trellis2lora.core.model.Denoiser;
import java.math.BigDecimal;
import java.util.List;

/**
 * An itemised price in US dollars: the items stay unrounded (as in the ARCHITECTURE example), only {@code total}
 * is rounded to cents.
 *
 * @param provisional true when the archive could not be inspected before answering (its server ignores Range
 *                    requests): the preparation item is then the minimum, and Prepare prices the request from what it
 *                    inspects; absent (null) when the price is exact
 */
public record PriceBreakdown(
        @JsonProperty("currency") String currency,
        @JsonProperty("preparation") Preparation preparation,
        @JsonProperty("stages") List<Stage> stages,
        @JsonProperty("subtotal") BigDecimal subtotal,
        @JsonProperty("total") BigDecimal total,
        @JsonProperty("provisional") Boolean provisional) {

    /** The same price with the inspection's count of skipped object files beside the preparation's counts. */
    public PriceBreakdown withSkipped(Integer skipped) {
        return new PriceBreakdown(currency, preparation.withSkipped(skipped), stages, subtotal, total, provisional);
    }

    /**
     * @param processedObjects in a final charge, the objects that preprocessing turned into the dataset (absent in an
     *                         estimate, and when preprocessing did not run or left no report)
     * @param refusedObjects   in a final charge, the objects preprocessing refused (each with its reason in its report)
     * @param skippedObjects   the archive's 3D object files not processed (nor billed) because another file has the
     *                         same content or manifest.csv leaves them out: the inspection's count, in the estimate
     *                         and the charge alike; absent when the archive was not inspected (or is preprocessed)
     */
    public record Preparation(
            @JsonProperty("objects") int objects,
            @JsonProperty("billed_objects") int billedObjects,
            @JsonProperty("rate_per_object") BigDecimal ratePerObject,
            @JsonProperty("reused_dataset") boolean reusedDataset,
            @JsonProperty("amount") BigDecimal amount,
            @JsonProperty("processed_objects") Integer processedObjects,
            @JsonProperty("refused_objects") Integer refusedObjects,
            @JsonProperty("skipped_objects") Integer skippedObjects) {

        public Preparation(int objects, int billedObjects, BigDecimal ratePerObject, boolean reusedDataset,
                           BigDecimal amount) {
            this(objects, billedObjects, ratePerObject, reusedDataset, amount, null, null, null);
        }

        /** The same item with the inspection's count of skipped object files. */
        public Preparation withSkipped(Integer skipped) {
            return new Preparation(objects, billedObjects, ratePerObject, reusedDataset, amount, processedObjects,
                    refusedObjects, skipped);
        }
    }

    public record Stage(
            @JsonProperty("denoiser") Denoiser denoiser,
            @JsonProperty("training_steps") int trainingSteps,
            @JsonProperty("rate_per_step") BigDecimal ratePerStep,
            @JsonProperty("rank_multiplier") BigDecimal rankMultiplier,
            @JsonProperty("resolution_multiplier") BigDecimal resolutionMultiplier,
            @JsonProperty("amount") BigDecimal amount) {
    }
}

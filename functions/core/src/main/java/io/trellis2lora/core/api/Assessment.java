package io.trellis2lora.core.api;

import com.fasterxml.jackson.annotation.JsonProperty;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.pricing.PriceBreakdown;
import io.trellis2lora.core.pricing.Pricing;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.Stager;
import io.trellis2lora.core.zip.ZipInspection;
import io.trellis2lora.core.zip.ZipInspector;
import java.io.IOException;

/**
 * Everything known about a request before any work starts: the validated request, what its archive holds, where
 * the later steps read the archive from, and the price. An https archive whose server ignores Range requests is not
 * downloaded here (the API answers within 29 s; archives go to 8 GB): without a stager its inspection is null and its
 * price {@link Pricing#provisional provisional}, and Prepare stages and inspects it.
 */
public record Assessment(
        @JsonProperty("request") TrainingRequest request,
        @JsonProperty("input_uri") String inputUri,
        @JsonProperty("inspection") ZipInspection inspection,
        @JsonProperty("estimate") PriceBreakdown estimate) {

    /** Validates {@code body}, inspects its archive with ranged reads, and prices it. @param stager null: defer */
    public static Assessment of(String body, RequestValidator validator, ArchiveOpener opener, Stager stager)
            throws IOException {
        TrainingRequest request = validator.parse(body);
        return of(request, opener, stager);
    }

    public static Assessment of(TrainingRequest request, ArchiveOpener opener, Stager stager) throws IOException {
        try (ArchiveOpener.Opened opened = opener.open(request.dataUrl(), stager)) {
            if (opened.deferred()) {
                return new Assessment(request, opened.inputUri(), null, Pricing.provisional(request));
            }
            ZipInspection inspection;
            try {
                inspection = ZipInspector.inspect(opened.source(), request.resolution());
            } catch (IOException | RuntimeException e) {
                if (opened.staged()) {
                    stager.discard(opened.inputUri());
                }
                throw e;
            }
            PriceBreakdown price = Pricing.estimate(request, inspection);
            return new Assessment(request, opened.inputUri(), inspection, price);
        }
    }
}

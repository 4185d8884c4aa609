package io.trellis2lora.core.pricing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.Json;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;
import java.math.BigDecimal;
import java.util.List;
import org.junit.jupiter.api.Test;

class PricingTest {
    static TrainingRequest request(List<Denoiser> d, int steps, int rank, int res) {
        return new TrainingRequest("s3://b/k.zip", d, res, rank, new BigDecimal("0.0001"), steps);
    }

    static final List<Denoiser> ALL = List.of(Denoiser.SPARSE_STRUCTURE, Denoiser.GEOMETRY, Denoiser.TEXTURE);

    @Test
    void architectureExampleCosts3193WithUnroundedItems() {
        PriceBreakdown p = Pricing.estimate(request(ALL, 2000, 32, 512), 20, false);
        assertEquals(new BigDecimal("2.0046"), p.preparation().amount());
        assertEquals(List.of(new BigDecimal("16.674"), new BigDecimal("6.492"), new BigDecimal("6.756")),
                p.stages().stream().map(PriceBreakdown.Stage::amount).toList());
        assertEquals(new BigDecimal("31.9266"), p.subtotal());
        assertEquals(new BigDecimal("31.93"), p.total());
        String json = Json.write(p);
        assertTrue(json.contains("\"total\":31.93"), json);
        assertTrue(json.contains("\"amount\":2.0046"), json);
    }

    @Test
    void fewerThanTenObjectsAreBilledAsTen() {
        PriceBreakdown p = Pricing.estimate(request(List.of(Denoiser.TEXTURE), 1000, 32, 512), 3, false);
        assertEquals(10, p.preparation().billedObjects());
        assertEquals(new BigDecimal("1.0023"), p.preparation().amount());
        assertEquals(new BigDecimal("4.38"), p.total()); // 1.0023 + 3.378 = 4.3803
    }

    @Test
    void rankAndResolutionMultiply() {
        assertEquals(new BigDecimal("1.689"),
                Pricing.estimate(request(List.of(Denoiser.TEXTURE), 1000, 16, 512), 0, true).stages().get(0).amount());
        assertEquals(new BigDecimal("13.512"),
                Pricing.estimate(request(List.of(Denoiser.TEXTURE), 1000, 64, 1024), 0, true).stages().get(0).amount());
        assertEquals(new BigDecimal("0.3246"),
                Pricing.estimate(request(List.of(Denoiser.GEOMETRY), 100, 32, 512), 0, true).stages().get(0).amount());
    }

    @Test
    void reusedDatasetHasNoPreparationCharge() {
        PriceBreakdown p = Pricing.estimate(request(List.of(Denoiser.GEOMETRY), 2000, 32, 512), 500, true);
        assertEquals(0, p.preparation().amount().signum());
        assertEquals(new BigDecimal("6.49"), p.total());
    }

    @Test
    void finalChargeCountsOnlySucceededStagesInRequestOrder() {
        PriceBreakdown p = Pricing.charge(request(ALL, 2000, 32, 512), 20, false,
                List.of(Denoiser.TEXTURE, Denoiser.SPARSE_STRUCTURE));
        assertEquals(List.of(Denoiser.SPARSE_STRUCTURE, Denoiser.TEXTURE),
                p.stages().stream().map(PriceBreakdown.Stage::denoiser).toList());
        assertEquals(new BigDecimal("25.43"), p.total()); // 2.0046 + 16.674 + 6.756 = 25.4346
        // No stage succeeded (preprocessing failed, or every stage did): nothing at all, preparation included.
        PriceBreakdown none = Pricing.charge(request(ALL, 2000, 32, 512), 20, false, List.of(), 18, 2);
        assertEquals(0, none.total().signum());
        assertEquals(0, none.preparation().billedObjects());
        assertEquals(18, none.preparation().processedObjects());
        assertEquals(2, none.preparation().refusedObjects());
    }
}

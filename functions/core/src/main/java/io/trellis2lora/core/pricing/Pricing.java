package io.trellis2lora.core.pricing;

import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.zip.ZipInspection;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Collection;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * The price list of ARCHITECTURE.md, in exact decimals: preparation = max(10, objects) x 0.10023 (zero when a
 * preprocessed dataset is reused); each stage = steps x rate x rank multiplier x resolution multiplier.
 */
public final class Pricing {
    public static final BigDecimal RATE_PER_OBJECT = new BigDecimal("0.10023");
    public static final int MINIMUM_BILLED_OBJECTS = 10;
    private static final Map<Denoiser, BigDecimal> RATE_PER_STEP = new EnumMap<>(Map.of(
            Denoiser.SPARSE_STRUCTURE, new BigDecimal("0.008337"),
            Denoiser.GEOMETRY, new BigDecimal("0.003246"),
            Denoiser.TEXTURE, new BigDecimal("0.003378")));

    private Pricing() {
    }

    /** What a request will cost if every stage succeeds. */
    public static PriceBreakdown estimate(TrainingRequest request, int objects, boolean reusedDataset) {
        return charge(request, objects, reusedDataset, request.denoisers());
    }

    /** What a request will cost, its archive's skipped object files (duplicates, outside the manifest) shown beside. */
    public static PriceBreakdown estimate(TrainingRequest request, ZipInspection inspection) {
        boolean reused = inspection.kind() == ZipInspection.Kind.PREPROCESSED;
        return estimate(request, inspection.objects(), reused).withSkipped(inspection.skippedObjects());
    }

    /**
     * The price of a request whose archive is not inspected yet: the stages exactly, preparation at the minimum
     * (10 objects); marked provisional, and replaced by Prepare's price once it has inspected the archive.
     */
    public static PriceBreakdown provisional(TrainingRequest request) {
        PriceBreakdown p = estimate(request, 0, false);
        return new PriceBreakdown(p.currency(), p.preparation(), p.stages(), p.subtotal(), p.total(), true);
    }

    /** The final charge: preparation plus only the stages that succeeded, in request order (nothing if none did). */
    public static PriceBreakdown charge(TrainingRequest request, int objects, boolean reusedDataset,
            Collection<Denoiser> succeeded) {
        return charge(request, objects, reusedDataset, succeeded, null, null);
    }

    /**
     * The final charge with what preprocessing did ({@code processed}/{@code refused} objects, null when unknown). A
     * request with no stage that succeeded (preparation or preprocessing failed, or every stage did) gave the caller
     * nothing: it is charged nothing, its preparation included.
     */
    public static PriceBreakdown charge(TrainingRequest request, int objects, boolean reusedDataset,
            Collection<Denoiser> succeeded, Integer processed, Integer refused) {
        if (objects < 0) {
            throw new IllegalArgumentException("object count cannot be negative: " + objects);
        }
        int billed = reusedDataset || succeeded.isEmpty() ? 0 : Math.max(MINIMUM_BILLED_OBJECTS, objects);
        BigDecimal prep = RATE_PER_OBJECT.multiply(BigDecimal.valueOf(billed));
        var preparation = new PriceBreakdown.Preparation(objects, billed, RATE_PER_OBJECT, reusedDataset, clean(prep),
                processed, refused, null);
        BigDecimal rankMul = rankMultiplier(request.rank());
        BigDecimal resMul = resolutionMultiplier(request.resolution());
        List<PriceBreakdown.Stage> stages = new ArrayList<>();
        BigDecimal sum = prep;
        for (Denoiser d : request.denoisers()) {
            if (!succeeded.contains(d)) {
                continue;
            }
            BigDecimal amount = BigDecimal.valueOf(request.trainingSteps()).multiply(RATE_PER_STEP.get(d))
                    .multiply(rankMul).multiply(resMul);
            stages.add(new PriceBreakdown.Stage(d, request.trainingSteps(), RATE_PER_STEP.get(d), rankMul, resMul,
                    clean(amount)));
            sum = sum.add(amount);
        }
        return new PriceBreakdown("USD", preparation, stages, clean(sum), sum.setScale(2, RoundingMode.HALF_UP), null);
    }

    public static BigDecimal ratePerStep(Denoiser d) {
        return RATE_PER_STEP.get(d);
    }

    static BigDecimal rankMultiplier(int rank) {
        return switch (rank) {
            case 16 -> new BigDecimal("0.5");
            case 32 -> BigDecimal.ONE;
            case 64 -> new BigDecimal("2");
            default -> throw new IllegalArgumentException("no price for rank " + rank);
        };
    }

    static BigDecimal resolutionMultiplier(int resolution) {
        return switch (resolution) {
            case 512 -> BigDecimal.ONE;
            case 1024 -> new BigDecimal("2");
            default -> throw new IllegalArgumentException("no price for resolution " + resolution);
        };
    }

    /** 16.674000 -> 16.674, and 0E-5 -> 0, so items print as in the price list. */
    private static BigDecimal clean(BigDecimal v) {
        BigDecimal s = v.stripTrailingZeros();
        return s.scale() < 0 ? s.setScale(0) : s;
    }
}

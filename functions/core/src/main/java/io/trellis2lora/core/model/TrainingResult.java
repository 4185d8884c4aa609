package io.trellis2lora.core.model;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import java.io.IOException;
import java.util.List;
import java.util.function.UnaryOperator;

/** The result document: adapters in request order, failed stages, and the reusable preprocessed dataset. */
public record TrainingResult(
        @JsonProperty("adapters") List<Adapter> adapters,
        @JsonProperty("failed") List<Failure> failed,
        @JsonProperty("preprocessed_data_file") FileRef preprocessedDataFile) {

    public TrainingResult {
        adapters = adapters == null ? List.of() : List.copyOf(adapters);
        failed = failed == null ? List.of() : List.copyOf(failed);
    }

    /** Parses a result document, refusing unknown fields by name. */
    public static TrainingResult parse(String json) {
        try {
            return Json.MAPPER.readValue(json, TrainingResult.class);
        } catch (UnrecognizedPropertyException e) {
            throw new InputRefusedException("unknown field '" + e.getPropertyName() + "' in the result document");
        } catch (IOException e) {
            throw new InputRefusedException("result document is not valid: " + firstLine(e.getMessage()));
        }
    }

    /** The same result with every file URL rewritten (e.g. s3:// to a presigned https URL). */
    public TrainingResult mapFiles(UnaryOperator<FileRef> f) {
        return new TrainingResult(
                adapters.stream().map(a -> a.mapFiles(f)).toList(),
                failed,
                preprocessedDataFile == null ? null : f.apply(preprocessedDataFile));
    }

    static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}

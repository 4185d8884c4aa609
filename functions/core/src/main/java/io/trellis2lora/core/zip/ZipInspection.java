package io.trellis2lora.core.zip;

import com.fasterxml.jackson.annotation.JsonProperty;

/**
 * What an archive holds, learnt from its central directory alone.
 *
 * @param kind             raw (3D objects to preprocess) or preprocessed (holds prepared_dataset.json)
 * @param objects          supported 3D objects (raw), or the objects listed in prepared_dataset.json (preprocessed)
 * @param preparedDataset  where prepared_dataset.json sits and what it says; null for raw archives
 */
public record ZipInspection(
        @JsonProperty("kind") Kind kind,
        @JsonProperty("objects") int objects,
        @JsonProperty("entries") int entries,
        @JsonProperty("archive_bytes") long archiveBytes,
        @JsonProperty("uncompressed_bytes") long uncompressedBytes,
        @JsonProperty("zip64") boolean zip64,
        @JsonProperty("prepared_dataset") PreparedDataset preparedDataset) {

    public enum Kind {
        @JsonProperty("raw") RAW,
        @JsonProperty("preprocessed") PREPROCESSED
    }

    public record PreparedDataset(
            @JsonProperty("path") String path,
            @JsonProperty("resolution") int resolution,
            @JsonProperty("base_model") String baseModel,
            @JsonProperty("format_version") int formatVersion) {
    }
}

package io.trellis2lora.core.zip;

import com.fasterxml.jackson.annotation.JsonProperty;

/**
 * What an archive holds, learnt from its central directory alone.
 *
 * @param kind             raw (3D objects to preprocess) or preprocessed (holds prepared_dataset.json)
 * @param objects          supported 3D objects (raw), or the objects listed in prepared_dataset.json (preprocessed)
 * @param preparedDataset  where prepared_dataset.json sits and what it says; null for raw archives
 * @param skippedObjects   raw archives: the 3D object files that will not be processed because another file has the
 *                         same content (processed once) or manifest.csv leaves them out; null for preprocessed ones
 */
public record ZipInspection(
        @JsonProperty("kind") Kind kind,
        @JsonProperty("objects") int objects,
        @JsonProperty("entries") int entries,
        @JsonProperty("archive_bytes") long archiveBytes,
        @JsonProperty("uncompressed_bytes") long uncompressedBytes,
        @JsonProperty("zip64") boolean zip64,
        @JsonProperty("prepared_dataset") PreparedDataset preparedDataset,
        @JsonProperty("skipped_objects") Integer skippedObjects) {

    public ZipInspection(Kind kind, int objects, int entries, long archiveBytes, long uncompressedBytes, boolean zip64,
            PreparedDataset preparedDataset) {
        this(kind, objects, entries, archiveBytes, uncompressedBytes, zip64, preparedDataset, null);
    }

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

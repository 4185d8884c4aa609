package io.trellis2lora.core.model;

import com.fasterxml.jackson.annotation.JsonProperty;

/** A file handed back to the user: in storage {@code url} is an s3:// URI; the result API presigns it to https. */
public record FileRef(
        @JsonProperty(value = "url", required = true) String url,
        @JsonProperty("content_type") String contentType,
        @JsonProperty("file_name") String fileName,
        @JsonProperty("file_size") Long fileSize) {

    public FileRef withUrl(String newUrl) {
        return new FileRef(newUrl, contentType, fileName, fileSize);
    }
}

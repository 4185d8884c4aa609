package io.trellis2lora.core;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;

/** The one JSON configuration used for every contract document (requests, results, API answers). */
public final class Json {
    public static final ObjectMapper MAPPER = JsonMapper.builder()
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            // Keeps 0.10023-style prices and learning rates exact when they pass through a JsonNode.
            .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS)
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            // One document is one value: `{...} {...}` or `{...}garbage` is refused, not read up to the first value.
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(JsonGenerator.Feature.WRITE_BIGDECIMAL_AS_PLAIN)
            .disable(SerializationFeature.FAIL_ON_EMPTY_BEANS)
            .serializationInclusion(JsonInclude.Include.NON_NULL)
            .build();

    private Json() {
    }

    /**
     * One line saying what is wrong with a document that did not parse, without Jackson's Java type names: the
     * problem and where (line, column).
     */
    public static String problem(JsonProcessingException e) {
        String what = e.getOriginalMessage() == null ? "unreadable" : e.getOriginalMessage();
        if (trailing(e)) {
            what = "more follows the JSON value (send exactly one JSON document)";
        } else {
            int nl = what.indexOf('\n');
            what = nl < 0 ? what : what.substring(0, nl);
        }
        JsonLocation at = e.getLocation();
        return at == null || at.getLineNr() < 0 ? what
                : what + " at line " + at.getLineNr() + ", column " + at.getColumnNr();
    }

    /** True when the document parsed but more followed it (FAIL_ON_TRAILING_TOKENS). */
    public static boolean trailing(JsonProcessingException e) {
        return e.getOriginalMessage() != null && e.getOriginalMessage().startsWith("Trailing token");
    }

    /**
     * A JSON data file the build copies into the jar beside {@code owner} (the worker's rule tables, read by both
     * languages); its absence is a broken build, said by name.
     */
    public static JsonNode resource(Class<?> owner, String name) {
        try (InputStream in = owner.getResourceAsStream(name)) {
            if (in == null) {
                throw new IllegalStateException(name + " is missing from the jar beside " + owner.getName()
                        + " (its module's pom.xml copies it from the worker)");
            }
            return MAPPER.readTree(in);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static String write(Object value) {
        try {
            return MAPPER.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialise " + value.getClass().getSimpleName(), e);
        }
    }

    public static String pretty(Object value) {
        try {
            return MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialise " + value.getClass().getSimpleName(), e);
        }
    }
}

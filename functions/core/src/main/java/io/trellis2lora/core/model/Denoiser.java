package io.trellis2lora.core.model;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import java.util.Arrays;
import java.util.Optional;

/** The three TRELLIS.2 stages a LoRA can be trained for, in pipeline order. */
public enum Denoiser {
    SPARSE_STRUCTURE("sparse_structure"),
    GEOMETRY("geometry"),
    TEXTURE("texture");

    private final String wireName;

    Denoiser(String wireName) {
        this.wireName = wireName;
    }

    @JsonValue
    public String wireName() {
        return wireName;
    }

    public static Optional<Denoiser> fromWire(String name) {
        return Arrays.stream(values()).filter(d -> d.wireName.equals(name)).findFirst();
    }

    @JsonCreator
    public static Denoiser parse(String name) {
        return fromWire(name).orElseThrow(() -> new IllegalArgumentException(
                "'" + name + "' is not one of sparse_structure, geometry, texture"));
    }

    @Override
    public String toString() {
        return wireName;
    }
}

package io.trellis2lora.core.validation;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.api.ApiResponse;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;
import java.math.BigDecimal;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class RequestValidatorTest {
    final RequestValidator cloud = new RequestValidator(RequestValidator.Mode.CLOUD);
    final RequestValidator local = new RequestValidator(RequestValidator.Mode.LOCAL);

    List<String> problems(String body) {
        return assertThrows(InputRefusedException.class, () -> cloud.parse(body)).problems();
    }

    String onlyProblem(String body) {
        List<String> p = problems(body);
        assertEquals(1, p.size(), p.toString());
        return p.get(0);
    }

    @Test
    void absentFieldsTakeTheDocumentedDefaults() {
        TrainingRequest r = cloud.parse("{\"data_url\": \"https://example.com/a.zip\"}");
        assertEquals(List.of(Denoiser.TEXTURE), r.denoisers());
        assertEquals(512, r.resolution());
        assertEquals(32, r.rank());
        assertEquals(0, new BigDecimal("1e-4").compareTo(r.learningRate()));
        assertEquals(1000, r.trainingSteps());
        TrainingRequest n = cloud.parse("{\"data_url\": \"s3://b/k.zip\", \"rank\": null}");
        assertEquals(32, n.rank());
    }

    @Test
    void aFullRequestIsKept() {
        TrainingRequest r = cloud.parse("{\"data_url\":\"s3://b/k.zip\",\"denoisers\":[\"geometry\",\"sparse_structure\"],"
                + "\"resolution\":1024,\"rank\":64,\"learning_rate\":0.001,\"training_steps\":10000}");
        assertEquals(List.of(Denoiser.GEOMETRY, Denoiser.SPARSE_STRUCTURE), r.denoisers());
        assertEquals(1024, r.resolution());
        assertEquals(64, r.rank());
        assertEquals(0, new BigDecimal("0.001").compareTo(r.learningRate()));
        assertEquals(10000, r.trainingSteps());
    }

    @Test
    void evaluateIsOnUnlessTheRequestSaysFalse() {
        assertEquals(true, cloud.parse("{\"data_url\":\"s3://b/k.zip\"}").evaluate());
        assertEquals(true, cloud.parse("{\"data_url\":\"s3://b/k.zip\",\"evaluate\":null}").evaluate());
        assertEquals(true, cloud.parse("{\"data_url\":\"s3://b/k.zip\",\"evaluate\":true}").evaluate());
        assertEquals(false, cloud.parse("{\"data_url\":\"s3://b/k.zip\",\"evaluate\":false}").evaluate());
    }

    @ParameterizedTest
    @ValueSource(strings = {"\"false\"", "0", "1", "[]", "{}"})
    void evaluateMustBeABooleanAndAnythingElseIsA400(String value) {
        String body = "{\"data_url\":\"s3://b/k.zip\",\"evaluate\":" + value + "}";
        String problem = onlyProblem(body);
        assertTrue(problem.startsWith("evaluate must be true or false, got "), problem);
        ApiResponse response = ApiResponse.refused(assertThrows(InputRefusedException.class, () -> cloud.parse(body)));
        assertEquals(400, response.status());
        assertTrue(response.body().contains(problem), response.body());
    }

    @Test
    void aStringEvaluateIsNamedAsAString() {
        assertEquals("evaluate must be true or false, got a string",
                onlyProblem("{\"data_url\":\"s3://b/k.zip\",\"evaluate\":\"false\"}"));
    }

    @Test
    void everyProblemIsReportedAtOnceOneLineEach() {
        List<String> p = problems("{\"denoisers\":[\"texture\",\"texture\",\"colour\"],\"resolution\":768,"
                + "\"rank\":8,\"learning_rate\":0.5,\"training_steps\":50,\"color\":1,\"epochs\":3}");
        assertEquals(9, p.size(), p.toString());
        String all = String.join("\n", p);
        for (String s : List.of("data_url is required", "'texture' more than once", "'colour'", "resolution must be",
                "rank must be", "learning_rate must be between", "training_steps must be between",
                "unknown field 'color'", "unknown field 'epochs'")) {
            assertTrue(all.contains(s), "missing '" + s + "' in\n" + all);
        }
        p.forEach(line -> assertTrue(!line.contains("\n"), line));
    }

    @Test
    void denoisersMustBeOneToThreeKnownUniqueNames() {
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"denoisers\":[]}").contains("1 to 3"));
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"denoisers\":\"texture\"}").contains("array"));
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"denoisers\":[\"shape\"]}").contains("'shape'"));
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"denoisers\":[\"geometry\",\"geometry\"]}")
                .contains("more than once"));
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"denoisers\":[1]}").contains("denoisers[0] must be a string"));
        List<String> four = problems("{\"data_url\":\"s3://b/k\",\"denoisers\":[\"texture\",\"geometry\","
                + "\"sparse_structure\",\"texture\"]}");
        assertTrue(four.get(0).contains("1 to 3"), four.toString());
    }

    @ParameterizedTest
    @ValueSource(strings = {"256", "\"512\"", "512.0", "-512", "true", "[512]", "99999999999999999999"})
    void resolutionMustBe512Or1024(String value) {
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"resolution\":" + value + "}").startsWith("resolution"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"8", "128", "\"32\"", "32.5", "-32", "{}"})
    void rankMustBe16Or32Or64(String value) {
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"rank\":" + value + "}").startsWith("rank"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"0", "-1e-4", "0.0000009", "0.011", "1e400", "\"1e-4\"", "\"NaN\"", "false"})
    void learningRateMustBeANumberWithinRange(String value) {
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"learning_rate\":" + value + "}")
                .startsWith("learning_rate"));
    }

    @Test
    void learningRateBoundsAreInclusive() {
        assertEquals(0, new BigDecimal("1e-6").compareTo(
                cloud.parse("{\"data_url\":\"s3://b/k\",\"learning_rate\":1e-6}").learningRate()));
        assertEquals(0, new BigDecimal("1e-2").compareTo(
                cloud.parse("{\"data_url\":\"s3://b/k\",\"learning_rate\":0.01}").learningRate()));
    }

    @ParameterizedTest
    @ValueSource(strings = {"99", "10001", "-1000", "1000.5", "1000.0", "\"1000\"", "1e3", "4294967396"})
    void trainingStepsMustBeAnIntegerFrom100To10000(String value) {
        assertTrue(onlyProblem("{\"data_url\":\"s3://b/k\",\"training_steps\":" + value + "}")
                .startsWith("training_steps"));
    }

    @Test
    void trainingStepBoundsAreInclusive() {
        assertEquals(100, cloud.parse("{\"data_url\":\"s3://b/k\",\"training_steps\":100}").trainingSteps());
        assertEquals(10000, cloud.parse("{\"data_url\":\"s3://b/k\",\"training_steps\":10000}").trainingSteps());
    }

    @ParameterizedTest
    @ValueSource(strings = {"\"http://example.com/a.zip\"", "\"ftp://example.com/a.zip\"", "\"file:///etc/passwd\"",
            "\"/data/a.zip\"", "\"a.zip\"", "\"s3://bucket-only\"", "\"s3:///key\"", "\"https:///nohost.zip\"",
            "\"https://user:pw@example.com/a.zip\"", "\"\"", "42", "[\"https://example.com/a.zip\"]"})
    void dataUrlMustBeHttpsOrS3InCloudMode(String value) {
        assertTrue(onlyProblem("{\"data_url\":" + value + "}").startsWith("data_url"));
    }

    @Test
    void localPathsAreAcceptedOnlyInLocalMode() {
        assertEquals("/data/a.zip", local.parse("{\"data_url\":\"/data/a.zip\"}").dataUrl());
        assertEquals("rel/a.zip", local.parse("{\"data_url\":\"rel/a.zip\"}").dataUrl());
        assertThrows(InputRefusedException.class, () -> local.parse("{\"data_url\":\"http://example.com/a.zip\"}"));
        assertEquals("https://example.com/a.zip", local.parse("{\"data_url\":\"https://example.com/a.zip\"}").dataUrl());
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "   ", "[]", "[{\"data_url\":\"s3://b/k\"}]", "\"text\"", "42", "null", "{",
            "{\"data_url\": NaN}", "{\"data_url\":\"s3://b/k\",\"learning_rate\":NaN}",
            "{\"data_url\":\"s3://b/k\",\"rank\":32,\"rank\":64}", "not json at all"})
    void bodiesThatAreNotAJsonObjectAreRefusedNotCrashed(String body) {
        InputRefusedException e = assertThrows(InputRefusedException.class, () -> cloud.parse(body));
        assertTrue(e.problems().get(0).startsWith("request body") || e.problems().get(0).startsWith("data_url"),
                e.problems().toString());
    }
}

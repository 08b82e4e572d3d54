#![no_main]

libfuzzer_sys::fuzz_target!(init: domicile::fuzzing::init(), |data: &[u8]| {
    domicile::fuzzing::flight_parameters(data)
});

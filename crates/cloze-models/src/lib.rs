//! `cloze-models`: libtorch-backed models; being built.

#[cfg(test)]
mod tests {
    #[test]
    fn libtorch_matmul_runs() {
        let a = tch::Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([2, 2]);
        let b = a.matmul(&a);
        let got = Vec::<f32>::try_from(b.flatten(0, -1)).expect("float tensor");
        assert_eq!(got, vec![7., 10., 15., 22.]);
    }
}
